"""Firmware and size: the Zephyr workspace, building the app, and flash/RAM reports (imports the model stage)."""
