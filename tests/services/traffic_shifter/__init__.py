"""Tests of the traffic-shifter."""
