"""What the node holds, as persisted: gpudra's own versioned API between daemon versions.

Pure model (pydantic schemas, no IO): the node daemon's checkpoint (`checkpoint`), kept apart
from the store that writes it (`gpudra.kubeletplugin.checkpoint_store`) as dra-example-driver
keeps ``internal/api/checkpoint`` apart from its checkpoint manager, so that the pure decision
modules can read and build it without reaching a writer.
"""
