"""Fuzzing the bus: no exception type may escape a consumer or a command handler.

``strategies`` draws what can arrive on each consumed subject, ``harness`` sends it to the real
services over a real nats-server and measures what happened, ``test_fuzz_bus`` checks the
invariants at a modest size and ``python -m tests.fuzz`` runs the same harness at scale.
"""
