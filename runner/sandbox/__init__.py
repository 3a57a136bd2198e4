"""The sandbox a plugin child applies to itself: rlimits, prctl, capabilities, Landlock, seccomp.

Runs inside the child, before any plugin code: ``runner/child/entry.py`` imports this
package without the host's ``runner/__init__``, so it and its modules use the standard
library (ctypes included) and ``runner.constants`` only, never a host module. The host
may import ``kernel`` (its own prctl calls) and tests may import any of it.

- ``enforce`` applies a profile in order and reports what took effect (:func:`apply`).
- ``landlock`` the filesystem and scope rules; ``seccomp`` the BPF filter compiled from
  ``allowlist`` (the system calls a plugin may make, and their argument rules).
- ``kernel`` raw syscalls, prctl and capset through ctypes; ``syscalls`` the numbers.
"""

from runner.sandbox.enforce import SandboxError, apply, probe

__all__ = ["SandboxError", "apply", "probe"]
