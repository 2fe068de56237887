"""The root of every gpudra error, and the whole tree of them in one place.

Each edge keeps its own typed subtree (``raise ... from e`` where it translates a library's
error), and every one of them derives from `GpudraError`, so the few places that must not
die on an expected failure catch the root: the CLI prints any `GpudraError` that reaches it
as one line, ``gpudra <command>: error: <message>``, and exits 2 (the traceback is logged at
``-v 4``); anything else reaching it is a bug and keeps its traceback.  Callers decide by
type, never by parsing messages; where trying again can help, ``retryable`` says so on the
type.  A node daemon never lets one claim's error fail an RPC: it reports it for that claim,
as the ``error_type`` named below (``claim: ...``).

The tree: indentation is inheritance; a root-level entry names its module (under
``gpudra.``), and ``ValueError`` marks the types that are ValueErrors too (pydantic
validators and parsers rely on that); a subclass lives in its parent's module::

    GpudraError: the root, never raised itself; the CLI prints one line and exits 2
      CliError (cli.main): a command line argparse cannot refuse by itself; fix the command
      SettingsError (cli.settings_flags): bad flags, GPUDRA_* variables or --config; fix them
      ExplainError (cli.explain): explain's files unreadable or not claims; fix the input
      GpuSetError (catalogue.gpuset, ValueError): a GPU set names a GPU the node lacks; fix it
      GpuLocked (nodeagent.locks): the other daemon serves a GPU of --gpus; make sets disjoint
      DirLocked (nodeagent.locks): another node daemon holds the plugin dir; stop one
      PluginConfigError (deviceplugin.config, ValueError): bad --device-plugin-config file
      AllocateError (deviceplugin.allocate, ValueError): Allocate refused; kubelet tells pod
      NvmlError (nvml.errors): the GPU backend failed; ``retryable`` per type; claim: nvml_error
        LibraryNotFound: no NVIDIA driver can be loaded; install one, or --backend mock
        NotSupported: the GPU or driver lacks the operation (e.g. MIG); do not retry
        InvalidArgument: the GPU rejects the request (unknown profile, bad placement); a bug
        InsufficientResources: the placement is taken, or a profile's limit is reached
        DeviceNotFound: no device, MIG instance or profile with that identity
        GpuLost: the GPU fell off the bus; its devices turn unhealthy; reset or drain it
        InUse: the device is busy (a MIG instance with processes); retryable
        ToolFailed: nvidia-smi is missing or failed; the message carries what it printed
          ToolTimedOut: the tool did not answer in time (driver busy); retryable
        ProfileError: a mock profile is unknown or malformed; fix --profile/--profile-file
      KubeError (kube.errors): the API server failed or refused; ``retryable`` per type
        BadRequest: 400, the request is malformed; a bug in gpudra
        Unauthorized: 401, no valid credentials; fix the kubeconfig or service account
        Forbidden: 403, RBAC or a webhook refuses; fix the roles (the chart's RBAC)
        NotFound: 404, no such object, namespace or resource type (an older cluster?)
        Conflict: 409, stale resourceVersion; re-read and re-apply, never resend as is
        AlreadyExists: 409, a create found the name taken; read or update it instead
        Gone: 410, a watch's or list's resourceVersion is too old; list again
        Invalid: 422, the server's validation refused the object; see ``causes``
        TooManyRequests: 429, throttled; retryable, after ``retry_after``
        ServerError: 5xx or a server-side timeout; retryable
        ConnectionFailed: the server is unreachable (refused, TLS, timeout); retryable
      CdiWriteError (cdi.writer): a CDI spec not written or removed; claim: cdi_error
      CheckpointError (kubeletplugin.checkpoint_store): not read or written; claim: checkpoint_error
      PrepareError (kubeletplugin.prepare_errors): the claim cannot be prepared; claim: its ``kind``
      MpsError (kubeletplugin.sharing.mps): an MPS daemon did not start or stop; claim: mps_error
      ClaimConfigError (kubeletplugin.sharing.claim_config, ValueError): a claim's GpuConfig is bad
      ShareError (kubeletplugin.sharing.share_plan, ValueError): a claim's shares cannot be prepared
      InputError (allocation.inputs, ValueError): a claim, class or slice is unusable; fix it
      CelCompileError (allocation.cel): a CEL selector does not compile; becomes InputError
      CelRuntimeError (allocation.cel): internal: a selector failed on one device, unselected
      SelectorError (allocation.search): internal: a selector failed at run time; pod unfit
      BudgetExceeded (allocation.search): internal: search gave up, "no fit here"; not shown
      QuantityError (kubetypes.quantity, ValueError): not a quantity, or out of range
      SemverError (kubetypes.semver, ValueError): the text is not a semantic version
      NotLeader (controller.reconciler): internal: lease lost mid-pass; the pass stops

Where the short lines above lead: ``claim: X`` is the prepare or unprepare error reported
to the kubelet for that claim alone, counted under ``error_type="X"`` (ClaimConfigError,
ShareError and MpsError reach it as a `PrepareError` of kind ``invalid_config``,
``invalid_request``/``unsupported_config`` and ``mps_error``); the kubelet retries.
``internal`` errors are control flow, caught next to where they are raised and never shown
to a user as such: CelRuntimeError becomes the device's "selector failed" reason, which
the search raises as SelectorError, which the allocator makes the outcome's
``selector_error`` (the pod cannot be allocated, as kube-scheduler decides);
BudgetExceeded becomes the search's ``gave up`` note; NotLeader a warning and the next
pass.  InputError (CelCompileError reaches callers as one) is the controller's verdict for
the pod and ``gpudra explain``'s exit 2.  GpuSetError, GpuLocked, DirLocked,
PluginConfigError, ProfileError and a CheckpointError reading the checkpoint stop a daemon
at start: one line, exit 2.
"""

from __future__ import annotations


class GpudraError(Exception):
    """Base of every exception gpudra defines; see the module docstring for the tree."""
