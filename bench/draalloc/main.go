// Command draalloc runs the allocator kube-scheduler uses (k8s.io/dynamic-resource-allocation,
// package structured) on the claims, slices and classes bench/allocator/compare.py writes, so
// gpudra's allocator can be measured against it on identical inputs, in process.
//
// Input (stdin, JSON): {"slices": [...], "classes": [...], "nodes": ["n1", ...],
// "claims": [{"claim": ResourceClaim, "apply": AllocationResult or null}, ...]}.
//
// Claims are allocated one after another and the allocations accumulate, as pods that are
// scheduled one at a time. Modes:
//
//   - first: Allocate on each node in order until one succeeds (what a Filter that stopped
//     at the first feasible node would cost);
//   - all: Allocate on every node, as the scheduler's Filter does, then take the first
//     feasible node (the DRA plugin does not score);
//   - check: like first, but the state accumulates the "apply" allocation of each claim
//     (gpudra's), so each verdict is on gpudra's state: a claim one side places and the
//     other cannot on the same state is a semantic disagreement.
//
// Output (stdout, JSON): one entry per claim with the node (or ""), the devices, and the
// nanoseconds spent (allocator construction plus every Allocate call for it).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/dynamic-resource-allocation/cel"
	"k8s.io/dynamic-resource-allocation/structured"
)

type input struct {
	Slices  []*resourceapi.ResourceSlice `json:"slices"`
	Classes []*resourceapi.DeviceClass   `json:"classes"`
	Nodes   []string                     `json:"nodes"`
	Claims  []struct {
		Claim *resourceapi.ResourceClaim      `json:"claim"`
		Apply *resourceapi.AllocationResult `json:"apply"`
	} `json:"claims"`
}

type outcome struct {
	Node    string   `json:"node"`
	Devices []string `json:"devices"`
	Nanos   int64    `json:"nanos"`
	Error   string   `json:"error,omitempty"`
}

type classes map[string]*resourceapi.DeviceClass

func (c classes) List() ([]*resourceapi.DeviceClass, error) {
	out := make([]*resourceapi.DeviceClass, 0, len(c))
	for _, v := range c {
		out = append(out, v)
	}
	return out, nil
}

func (c classes) Get(name string) (*resourceapi.DeviceClass, error) {
	if v, ok := c[name]; ok {
		return v, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Group: "resource.k8s.io", Resource: "deviceclasses"}, name)
}

// features: what kube-scheduler 1.37 enables by default (its DRA feature gates' defaults,
// pkg/scheduler/framework/plugins/dynamicresources AllocatorFeatures).
var features = structured.Features{
	AdminAccess:             true,
	PrioritizedList:         true,
	PartitionableDevices:    true,
	DeviceTaints:            true,
	DeviceBindingAndStatus:  true,
	ConsumableCapacity:      true,
	FractionalCapacityRange: true,
}

func record(state *structured.AllocatedState, alloc *resourceapi.AllocationResult) {
	if alloc == nil {
		return
	}
	for _, r := range alloc.Devices.Results {
		if r.AdminAccess != nil && *r.AdminAccess {
			continue
		}
		id := structured.MakeDeviceID(r.Driver, r.Pool, r.Device)
		if r.ShareID != nil {
			state.AllocatedSharedDeviceIDs.Insert(structured.MakeSharedDeviceID(id, r.ShareID))
			if r.ConsumedCapacity != nil {
				state.AggregatedCapacity.Insert(structured.NewDeviceConsumedCapacity(id, r.ConsumedCapacity))
			}
			continue
		}
		state.AllocatedDevices.Insert(id)
	}
}

func main() {
	mode := flag.String("mode", "first", "first | all | check")
	flag.Parse()
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "draalloc: reading input:", err)
		os.Exit(2)
	}
	lister := classes{}
	for _, c := range in.Classes {
		lister[c.Name] = c
	}
	nodes := make([]*v1.Node, len(in.Nodes))
	for i, n := range in.Nodes {
		nodes[i] = &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"kubernetes.io/hostname": n}}}
	}
	state := structured.AllocatedState{
		AllocatedDevices:         sets.New[structured.DeviceID](),
		AllocatedSharedDeviceIDs: sets.New[structured.SharedDeviceID](),
		AggregatedCapacity:       structured.NewConsumedCapacityCollection(),
	}
	cache := cel.NewCache(10, cel.Features{EnableConsumableCapacity: true})
	ctx := context.Background()
	out := make([]outcome, 0, len(in.Claims))
	for _, c := range in.Claims {
		start := time.Now()
		o := outcome{}
		alloc, err := structured.NewAllocator(ctx, features, state, lister, in.Slices, cache)
		var chosen *resourceapi.AllocationResult
		if err != nil {
			o.Error = err.Error()
		} else {
			for _, node := range nodes {
				results, err := alloc.Allocate(ctx, node, []*resourceapi.ResourceClaim{c.Claim})
				if err != nil {
					o.Error = err.Error() // a fatal error (a CEL runtime error) fails the pod
					chosen = nil
					o.Node = ""
					break
				}
				if len(results) == 1 && chosen == nil {
					chosen = &results[0]
					o.Node = node.Name
					if *mode != "all" {
						break
					}
				}
			}
		}
		o.Nanos = time.Since(start).Nanoseconds()
		if chosen != nil {
			for _, r := range chosen.Devices.Results {
				o.Devices = append(o.Devices, r.Pool+"/"+r.Device)
			}
		}
		if *mode == "check" {
			record(&state, c.Apply)
		} else {
			record(&state, chosen)
		}
		out = append(out, o)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "draalloc: writing output:", err)
		os.Exit(2)
	}
}
