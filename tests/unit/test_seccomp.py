"""The seccomp check of injected calls: a classic BPF interpreter run on seccomp_data."""

from __future__ import annotations

import struct

from containerfs.kernel.seccomp import bpf_run, seccomp_verdict

ALLOW = 0x7FFF0000
ERRNO_EPERM = 0x00050001
KILL_PROCESS = 0x80000000
KILL_THREAD = 0x00000000
TRAP = 0x00030000


def stmt(code: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, 0, 0, k)


def jump(code: int, k: int, jt: int, jf: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


LD_NR = stmt(0x20, 0)  # A = seccomp_data.nr
LD_ARCH = stmt(0x20, 4)
LD_ARG1 = stmt(0x20, 24)  # low word of args[1]
RET_A = stmt(0x16, 0)


def ret(k: int) -> bytes:
    return stmt(0x06, k)


def deny(nr: int, action: int) -> bytes:
    """Like libseccomp: check the arch, then one syscall number."""
    return (
        LD_ARCH
        + jump(0x15, 0xC000003E, 1, 0)
        + ret(KILL_PROCESS)
        + LD_NR
        + jump(0x15, nr, 0, 1)
        + ret(action)
        + ret(ALLOW)
    )


def test_number_and_arch() -> None:
    prog = deny(53, KILL_PROCESS)
    assert seccomp_verdict([prog], 53, 0, [1, 1, 0, 0]) == KILL_PROCESS
    assert seccomp_verdict([prog], 308, 0, [3, 0x4000_0000]) == ALLOW


def test_arguments_and_the_most_restrictive_filter_wins() -> None:
    net_only = LD_NR + jump(0x15, 308, 0, 3) + LD_ARG1 + jump(0x15, 0x4000_0000, 0, 1)
    net_only += ret(ERRNO_EPERM) + ret(ALLOW)
    assert seccomp_verdict([net_only], 308, 0, [3, 0x4000_0000]) == ERRNO_EPERM
    assert seccomp_verdict([net_only], 308, 0, [3, 0x0400_0000]) == ALLOW
    trap_close = deny(3, TRAP)
    assert seccomp_verdict([net_only, trap_close], 3, 0, [5]) == TRAP
    assert seccomp_verdict([trap_close, deny(3, KILL_THREAD)], 3, 0, [5]) == KILL_THREAD
    assert seccomp_verdict([deny(3, KILL_THREAD), deny(3, KILL_PROCESS)], 3, 0, [5]) == (
        KILL_PROCESS
    )


def test_alu_memory_and_jumps() -> None:
    data = struct.pack("<iIQ6Q", 308, 0xC000003E, 0x1000, 7, 0x4000_0000, 0, 0, 0, 0)
    # A = nr; M[0] = A; A = (A + 2) * 3 & 0xFFFF; X = A; A = M[0]; A = A - X (wraps)
    prog = (
        LD_NR
        + stmt(0x02, 0)
        + stmt(0x04, 2)
        + stmt(0x24, 3)
        + stmt(0x54, 0xFFFF)
        + stmt(0x07, 0)
        + stmt(0x60, 0)
        + stmt(0x1C, 0)
        + RET_A
    )
    assert bpf_run(prog, data) == (308 - 930) & 0xFFFFFFFF
    assert bpf_run(stmt(0x01, 9) + stmt(0x87, 0) + RET_A, data) == 9  # LDX imm, TXA
    # JA skips, JSET tests bits, JGT/JGE compare unsigned.
    prog = (
        stmt(0x05, 1)
        + ret(1)
        + LD_ARG1
        + jump(0x45, 0x4000_0000, 0, 2)
        + jump(0x35, 0x4000_0000, 0, 1)
        + ret(ALLOW)
        + ret(KILL_PROCESS)
    )
    assert bpf_run(prog, data) == ALLOW
    assert bpf_run(stmt(0x00, 5) + stmt(0x34, 0) + RET_A, data) == 0  # division by zero
