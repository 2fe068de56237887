"""GPU faults and recoveries become Events on the Node: what is said, and that sending never
blocks the caller nor ends on an API error."""

from __future__ import annotations

import threading
from typing import Any

from gpudra.devices.faults import Fault, FaultKind
from gpudra.kube.errors import KubeError
from gpudra.kubeletplugin.node_events import NodeEvents, gpu_event
from gpudra.nodeagent.faults import FaultTracker
from gpudra.nodeagent.liveness import Liveness
from gpudra.nodeagent.watch import GpuWatch
from gpudra.nvml.backend import HealthEvent, HealthEventKind
from gpudra.nvml.mock import MockBackend, load_machine

XID79 = Fault(FaultKind.XID, 1764590400.0, 79)
XID13 = Fault(FaultKind.XID, 1764590400.0, 13)
LOST = Fault(FaultKind.LOST, 1764590400.0)


def test_what_is_said() -> None:
    kind, reason, msg = gpu_event(3, "GPU-x", (), (XID79,), lost_effect="NoExecute") or ("", "", "")
    assert (kind.value, reason) == ("Warning", "GpuFault")
    assert msg.startswith("GPU 3 (GPU-x): XID 79")
    assert msg.endswith("its devices are tainted gpu.gpudra.io/xid=79:NoSchedule")
    said = gpu_event(3, "GPU-x", (XID79,), (XID79, LOST), lost_effect="NoSchedule")
    assert said is not None and "gpu.gpudra.io/gpu-lost=true:NoSchedule" in said[2]
    assert "XID 79" not in said[2]  # only what is new
    said = gpu_event(2, "GPU-y", (), (XID13,), lost_effect="NoExecute")
    assert said is not None and "informational" in said[2]
    said = gpu_event(3, "GPU-x", (XID79, LOST), (), lost_effect="NoExecute")
    assert said is not None and said[:2] == (said[0], "GpuRecovered")
    assert said[0].value == "Normal" and "recovered from XID 79" in said[2]
    assert gpu_event(3, "GPU-x", (XID79,), (XID79,), lost_effect="NoExecute") is None


class Client:
    def __init__(self, fail: int = 0) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail
        self.done = threading.Semaphore(0)

    def create(self, res: Any, obj: dict[str, Any], *, namespace: str | None = None) -> Any:
        try:
            if self.fail:
                self.fail -= 1
                raise KubeError("the API server said no")
            self.created.append((namespace or "", obj))
            return obj
        finally:
            self.done.release()


def test_the_tracker_sends_a_fault_and_a_recovery_as_node_events() -> None:
    client = Client(fail=1)
    events = NodeEvents(client, node_name="n1", lost_effect="NoExecute")  # type: ignore[arg-type]
    clock = [1764590400.0]
    ft = FaultTracker(recovery_s=0, lost_effect="NoExecute", clock=lambda: clock[0])
    backend = MockBackend(load_machine("dgx-h100"), node_name="n1")
    inv = backend.inventory()
    watch = GpuWatch(backend, ft, Liveness(nvml_wedged_s=60), inventory=inv, probe_interval_s=1)
    watch.subscribe(
        lambda r: [events.gpu_changed(c.index, c.uuid, c.before, c.now) for c in r.changes]
    )
    uuid = inv.gpus[3].uuid
    stop = threading.Event()
    t = threading.Thread(target=events.run, args=(stop,), daemon=True)
    t.start()
    ft.event(HealthEvent(kind=HealthEventKind.XID, gpu_uuid=inv.gpus[1].uuid, xid=31), inv)
    watch.announce(inv)  # the first send fails: logged, dropped, the thread goes on
    assert client.done.acquire(timeout=5)
    ft.event(HealthEvent(kind=HealthEventKind.XID, gpu_uuid=uuid, xid=79), inv)
    watch.announce(inv)
    watch.announce(inv)  # unchanged: nothing more
    ft.event(HealthEvent(kind=HealthEventKind.RECOVERED, gpu_uuid=uuid), inv)
    clock[0] += 1
    watch.announce(inv)
    assert client.done.acquire(timeout=5) and client.done.acquire(timeout=5)
    stop.set()
    t.join(5)
    assert not t.is_alive() and events.dropped == 1 and events.sent == 2
    (ns1, fault), (ns2, recovered) = client.created
    assert ns1 == ns2 == "default"
    assert fault["involvedObject"] == {
        "kind": "Node",
        "apiVersion": "v1",
        "name": "n1",
        "uid": "n1",
    }
    assert (fault["type"], fault["reason"]) == ("Warning", "GpuFault")
    assert fault["message"].startswith(f"GPU 3 ({uuid}): XID 79")
    assert (recovered["type"], recovered["reason"]) == ("Normal", "GpuRecovered")
    assert fault["source"] == {"component": "gpudra-kubelet-plugin", "host": "n1"}
