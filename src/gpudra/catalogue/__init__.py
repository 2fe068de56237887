"""The node catalogue: the one answer to "what is device ``<name>`` on this node?".

Built (pure) from the inventory, the GPU-mode settings and the API server's capabilities;
the slice builder renders ResourceSlices from it and prepare resolves device names in it.
``names`` spells device names, ``attributes`` the attribute names devices carry,
``render_gpu``/``render_mig`` render slice devices, ``gpuset`` parses GPU-set settings and
``catalogue`` holds the catalogue itself.
"""
