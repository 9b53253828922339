"""Fuzzing the bus: no exception type may escape a consumer or a command handler.

What is sent: ``subjects`` (the consumed subjects, one row each), ``values`` (valid messages),
``mutations`` (how they are spoiled), ``sentinels`` (hand-written defect cases) and
``strategies`` (per subject: the examples of a seed).

What is measured: ``harness`` runs the real services against a real nats-server and sends the
examples (``planning`` predicts each consumer's verdict, ``jetstream`` and ``commands`` send
and watch, ``processes`` and ``logs`` read the services), into a ``model.FuzzReport``;
``invariants`` checks it and ``rendering`` prints it.

``test_fuzz_bus`` checks the invariants at a modest size and ``python -m tests.fuzz`` runs the
same harness at scale.
"""
