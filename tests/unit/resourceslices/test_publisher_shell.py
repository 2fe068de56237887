"""The slice publisher as a shell: one sync against gpudra's recording fake client, asserting
on the writes it makes (creates, in-place replaces, deletes, retries after a conflict)."""

from __future__ import annotations

import copy
from typing import Any

from gpudra.catalogue.catalogue import build_catalogue
from gpudra.devices.inventory import Inventory
from gpudra.kube.errors import Conflict
from gpudra.kube.resources import NODES, RESOURCESLICES
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra.resourceslices.builder import desired_slices
from gpudra.resourceslices.publisher import SlicePublisher
from tests.fakes.kube import FakeKubeClient

NODE, DRIVER = "node-a", "gpu.gpudra.io"


def inventory(profile: str = "pcie-l4") -> Inventory:
    return MockBackend(load_machine(profile), node_name=NODE).inventory()


class Node:
    """What the publisher is told to publish, changeable between passes."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.asked: list[dict[str, Any] | None] = []

    def desired(self, owner: dict[str, Any] | None) -> list[dict[str, Any]]:
        self.asked.append(owner)
        return desired_slices(build_catalogue(self.inv), driver=DRIVER, owner=owner)


def publisher(fake: FakeKubeClient, node: Node) -> SlicePublisher:
    return SlicePublisher(fake, node_name=NODE, driver=DRIVER, desired=node.desired)


def writes(fake: FakeKubeClient) -> list[str]:
    return [str(w) for w in fake.writes]


def test_the_first_pass_creates_the_pool_owned_by_the_node() -> None:
    fake = FakeKubeClient()
    fake.seed(NODES, {"metadata": {"name": NODE, "uid": "node-uid"}})
    node = Node(inventory())
    changes = publisher(fake, node).sync()
    assert changes.generation == 1 and len(changes.create) == 1
    (made,) = fake.objects(RESOURCESLICES)
    assert made["spec"]["pool"] == {"name": NODE, "generation": 1, "resourceSliceCount": 1}
    assert made["metadata"]["ownerReferences"][0]["uid"] == "node-uid"
    assert writes(fake) == [f"create resourceslices {made['metadata']['name']}"]


def test_without_a_node_object_the_pool_is_published_unowned() -> None:
    fake = FakeKubeClient()
    publisher(fake, Node(inventory())).sync()
    (made,) = fake.objects(RESOURCESLICES)
    assert "ownerReferences" not in made["metadata"]


def test_an_unchanged_node_writes_nothing_and_a_change_replaces_in_place() -> None:
    fake = FakeKubeClient()
    node = Node(inventory())
    pub = publisher(fake, node)
    pub.sync()
    before = fake.objects(RESOURCESLICES)[0]
    fake.actions.clear()
    assert pub.sync().empty and fake.writes == []
    node.inv = inventory("dgx-h100")  # other GPUs: new devices, same slice name
    changes = pub.sync()
    assert changes.generation == 2 and len(changes.update) == 1 and not changes.create
    (replace,) = fake.writes
    assert replace.verb == "replace"
    assert replace.body["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert replace.body["spec"]["pool"]["generation"] == 2


def test_a_conflict_replans_from_what_the_server_holds() -> None:
    fake = FakeKubeClient()
    node = Node(inventory())
    pub = publisher(fake, node)
    pub.sync()
    node.inv = inventory("dgx-h100")
    fake.actions.clear()
    fake.fail_next("replace", RESOURCESLICES, Conflict("the object has been modified"))
    pub.sync()
    assert [w.verb for w in fake.writes] == ["replace", "replace"]
    assert isinstance(fake.writes[0].error, Conflict) and fake.writes[1].error is None
    assert [a.verb for a in fake.actions].count("list") == 2  # re-listed before re-planning


def test_slices_the_pool_no_longer_needs_are_deleted_by_uid() -> None:
    fake = FakeKubeClient()
    node = Node(inventory("dgx-h100"))
    pub = SlicePublisher(
        fake,
        node_name=NODE,
        driver=DRIVER,
        desired=lambda owner: desired_slices(
            build_catalogue(node.inv), driver=DRIVER, owner=owner, max_devices=3
        ),
    )
    pub.sync()
    assert len(fake.objects(RESOURCESLICES)) == 3
    node.inv = inventory("pcie-l4")  # 4 GPUs: two slices
    fake.actions.clear()
    pub.sync()
    (delete,) = [w for w in fake.writes if w.verb == "delete"]
    gone = delete.name
    assert gone.endswith("-2") and delete.body["preconditions"]["uid"]
    assert len(fake.objects(RESOURCESLICES)) == 2


def test_planning_does_not_change_what_it_was_given() -> None:
    wanted = desired_slices(build_catalogue(inventory()), driver=DRIVER)
    kept = copy.deepcopy(wanted)
    fake = FakeKubeClient()
    SlicePublisher(fake, node_name=NODE, driver=DRIVER, desired=lambda owner: wanted).sync()
    assert wanted == kept and fake.objects(RESOURCESLICES)[0]["spec"]["pool"]["generation"] == 1
