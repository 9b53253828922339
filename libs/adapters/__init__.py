"""Adapters to the outside systems Sluice talks to, one module per system.

- ``kubernetes``  the official client, confined here: configuration, typed errors, raw
                  list / get / create / watch calls run off the event loop.
- ``informers``   list + watch caches over ``kubernetes`` (no client import of its own).

Third-party exceptions are translated into ``libs.errors`` at this boundary and never escape.
"""
