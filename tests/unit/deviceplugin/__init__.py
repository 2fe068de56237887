"""Unit tests of the classic device-plugin API (gpudra.deviceplugin)."""
