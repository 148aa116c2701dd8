"""Would a seccomp filter let an injected system call through? A classic-BPF interpreter.

A call injected into a process (:mod:`inject`) that one of its seccomp
filters answers with KILL, TRAP or USER_NOTIF would kill or hang it.  The
move reads each thread's filters (``PTRACE_SECCOMP_GET_FILTER``) and runs
them here on every call before making it, as the kernel would, so that such
a call is refused (EPERM) instead.  Constants from linux/seccomp.h and
linux/audit.h; x86_64 only, as the move is.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from containerfs.kernel import sys as ksys

_AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_ACTION_FULL = 0xFFFF0000
SECCOMP_RET_DATA = 0x0000FFFF
SECCOMP_ACTIONS = {
    0x80000000: "kill the process",
    0x00000000: "kill the thread",
    0x00030000: "send it SIGSYS",
    0x00050000: "fail",
    0x7FC00000: "hand it to a seccomp supervisor",
    0x7FF00000: "fail",  # RET_TRACE with no PTRACE_O_TRACESECCOMP: ENOSYS
    0x7FFC0000: "allow",
    0x7FFF0000: "allow",
}
#: Actions under which an injected call runs, or fails cleanly with an errno.
SECCOMP_HARMLESS = frozenset({0x00050000, 0x7FF00000, 0x7FFC0000, 0x7FFF0000})


def bpf_run(prog: bytes, data: bytes) -> int:
    """Run a classic BPF seccomp program on ``struct seccomp_data`` bytes."""
    insns = [struct.unpack_from("<HBBI", prog, i) for i in range(0, len(prog), 8)]
    a = x = 0
    mem = [0] * 16
    pc = 0
    mask = 0xFFFFFFFF
    while 0 <= pc < len(insns):
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if cls in (0x00, 0x01):  # LD, LDX
            mode = code & 0xE0
            if mode == 0x20 and cls == 0x00:  # ABS (word)
                if k + 4 > len(data):
                    return 0
                value = struct.unpack_from("<I", data, k)[0]
            elif mode == 0x00:  # IMM
                value = k
            elif mode == 0x60:  # MEM
                value = mem[k & 15]
            elif mode == 0x80:  # LEN
                value = len(data)
            else:
                raise ValueError(f"unsupported BPF load {code:#x}")
            if cls == 0x00:
                a = value
            else:
                x = value
        elif cls == 0x02:  # ST
            mem[k & 15] = a
        elif cls == 0x03:  # STX
            mem[k & 15] = x
        elif cls == 0x04:  # ALU
            op = code & 0xF0
            src = x if code & 0x08 else k
            if op == 0x00:
                a = a + src
            elif op == 0x10:
                a = a - src
            elif op == 0x20:
                a = a * src
            elif op == 0x30:
                if src == 0:
                    return 0
                a = a // src
            elif op == 0x40:
                a = a | src
            elif op == 0x50:
                a = a & src
            elif op == 0x60:
                a = a << (src & 31)
            elif op == 0x70:
                a = a >> (src & 31)
            elif op == 0x80:
                a = -a
            elif op == 0x90:
                if src == 0:
                    return 0
                a = a % src
            elif op == 0xA0:
                a = a ^ src
            else:
                raise ValueError(f"unsupported BPF ALU op {code:#x}")
            a &= mask
        elif cls == 0x05:  # JMP
            op = code & 0xF0
            if op == 0x00:
                pc += k
                continue
            src = x if code & 0x08 else k
            if op == 0x10:
                cond = a == src
            elif op == 0x20:
                cond = a > src
            elif op == 0x30:
                cond = a >= src
            elif op == 0x40:
                cond = bool(a & src)
            else:
                raise ValueError(f"unsupported BPF jump {code:#x}")
            pc += jt if cond else jf
        elif cls == 0x06:  # RET
            return a if code & 0x18 == 0x10 else k
        else:  # MISC
            if code & 0xF8 == 0x80:
                a = x
            else:
                x = a
    return 0


def seccomp_verdict(filters: Sequence[bytes], nr: int, ip: int, args: Sequence[int]) -> int:
    """The action (``SECCOMP_RET_*``, with data) the filters give a system call."""
    argv = [ksys.u64(a) for a in args] + [0] * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, _AUDIT_ARCH_X86_64, ip, *argv)
    verdict = 0x7FFF0000
    for prog in filters:
        ret = bpf_run(prog, data)
        action = ret & SECCOMP_RET_ACTION_FULL
        # The kernel keeps the lowest action, compared as signed 32-bit numbers.
        if _signed32(action) < _signed32(verdict & SECCOMP_RET_ACTION_FULL):
            verdict = ret
    return verdict


def _signed32(value: int) -> int:
    return value - 2**32 if value >= 2**31 else value


__all__ = [
    "SECCOMP_ACTIONS",
    "SECCOMP_HARMLESS",
    "SECCOMP_RET_ACTION_FULL",
    "bpf_run",
    "seccomp_verdict",
]
