"""Composition roots: the ``gpudra`` subcommands wire settings, backends and clients here."""
