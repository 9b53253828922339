"""``make demo``: Flagger's APISIX tutorial end to end on a local sandbox, in about four minutes.

What it does, the way a user would with the stock kubectl:

1. starts a chat sink that records the Slack messages Sluice sends, then ``python -m sandbox
   up --with-sluice`` in a state directory of its own (a fresh temporary one unless ``--dir``),
   with ``--free-ports`` and a pod network of its own, so it never meets ``make sandbox-up``;
2. applies the tutorial's podinfo Deployment, its HPA, the ApisixRoute and the Canary from
   ``tests/data/manifests/`` unchanged, and waits for the canary's phase Initialized;
3. rollout 1, a good revision: ``kubectl set image ... podinfo:6.0.1``; waits for Succeeded;
4. rollout 2, a faulty revision: a new image tag whose pods answer half of the requests with
   HTTP 500 (``SANDBOX_ERROR_RATE=0.5``, which the sandbox's pods honour), as one change of the
   pod template so that it is one revision; waits for Failed;
5. exits 0 when rollout 1 was promoted (the primary runs 6.0.1) and rollout 2 rolled back (the
   primary unchanged), 1 otherwise with a line saying what was expected and what happened, and
   stops everything it started — on success, failure and Ctrl-C / SIGTERM — unless ``--keep``.

While it runs it shows the canary's weight and phase, each metric's last value against its
threshold (``metric_checked`` events), the events as ``kubectl describe canary`` lists them and
the Slack messages the sink received: a live view on a terminal, plain lines otherwise (CI,
pipes, ``--plain``). Events come from the bus: a JetStream ordered consumer on
``sluice.events.test.podinfo.>``, so they are the stream's de-duplicated events, exactly what
the notifier sees. Every wait has a deadline; a failure names what was expected, what happened
and the logs to read (the state directory is kept when the demo fails).
"""

# The modules, in the order they depend on each other:
#   tutorial  the tutorial's objects, the two revisions, every deadline
#   chat      the chat sink standing in for Slack, and how its messages read
#   snapshot  the Board: what is shown, as plain data (and plain lines)
#   display   the Board drawn with rich: the live view
#   outcome   the verdicts, the report and its summary
#   waiting   the demo's deadline, and polling with it
#   events    the canary's events from the bus
#   cluster   the demo's own sandbox: up, kubectl, down
#   story     the run itself: manifests, rollout 1, rollout 2
#   cli       options, signals, the run's order, the teardown (``__main__`` calls it)
