"""CDI (Container Device Interface): the pure spec builder and the spec-file writer.

One transient spec per prepared claim; the kubelet hands the CDI ids to the runtime, which
applies the edits (env, device nodes, mounts) to the container.
"""
