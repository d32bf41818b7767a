"""Test fixtures' building blocks, for the pytest plugin (`field_lab.pytest_plugin`) and for
harnesses that want the same parts without pytest.

    field_lab.testing.platform   PlatformSpec, PaygPlatform, running_platform
    field_lab.testing.link       LinkSpec, PaygLink, linked
    field_lab.testing.dut        Dut, SimulatorSpec, open_dut, simulator
    field_lab.testing.errors     FixtureError, DutError, DutUnreachable, DutTimeout

This package imports none of them itself, so loading the plugin stays cheap.
"""
