"""Recording fakes of gpudra's own boundaries, for unit tests of the IO shells.

Each fake stands in for one of gpudra's interfaces (not for the system behind it): it returns
what the test seeded, fails when the test scripts it to, and records what the shell did so the
test asserts on those actions.  ``kube.FakeKubeClient`` replaces `gpudra.kube.KubeClient`.
"""
