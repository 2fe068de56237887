"""The cluster controller: topology-aware, all-or-nothing allocation for gated pods and gangs.

Pure decisions (``groups``, ``fit``, ``decide``; ``events`` builds what the user is told) and
a thin level-triggered shell (``reconciler``) that reads the API, decides, and writes claim
allocations, gates and events.
"""
