"""marketo_sandbox: a local Adobe Marketo Engage API (Identity, REST, Asset, Bulk Import) for tests,
benchmarks and the demo. See README.md in this directory."""

from .clock import ManualClock, SystemClock
from .config import FaultConfig, InstanceConfig, LimitsConfig
from .server import Sandbox, build_sandbox
from .testing import SandboxHandle, running_sandbox, threaded_sandbox

__all__ = [
    "FaultConfig",
    "InstanceConfig",
    "LimitsConfig",
    "ManualClock",
    "Sandbox",
    "SandboxHandle",
    "SystemClock",
    "build_sandbox",
    "running_sandbox",
    "threaded_sandbox",
]
