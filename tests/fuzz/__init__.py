"""Fuzzing the bus: no exception type may escape a consumer or a command handler.

What is sent: ``subjects`` (the consumed subjects, one row each), ``values`` (valid messages),
``mutations`` (how they are spoiled), ``sentinels`` (hand-written defect cases) and
``strategies`` (per subject: the examples of a seed).

What is measured: ``harness`` runs the real services against a real nats-server and sends the
examples (``planning`` predicts each consumer's verdict, ``jetstream`` and ``commands`` send
and watch, ``processes`` and ``logs`` read the services), into a ``model.FuzzReport``;
``invariants`` checks it and ``rendering`` prints it.

With canaries in flight (``FuzzConfig.rollouts``, ``--with-rollouts``) the run happens on a
sandbox stack with all five services, and ``rollouts`` keeps real canaries rolling out while
the bus is fuzzed and checks that each rollout ends as it must.

``test_fuzz_bus`` checks the invariants at a modest size (and once with two canaries in
flight) and ``python -m tests.fuzz`` runs the same harness at scale.
"""
