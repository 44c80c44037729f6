#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Writes the seed corpus fuzz/corpus/: one small input per feature of
# fuzz_ops.c, in its encoding (op byte: low 5 bits = operation, bits 5-6 =
# allocator slot; then the operation's argument bytes, little-endian).
import os
import struct

INIT_ANY, INIT_FIXED, INIT_PCPU, INIT_PCPU_ANY, UNIT_INIT = 0, 2, 3, 4, 5
ALLOC, ALLOC_KERNEL, FREE, FREE_RCU, RAW_FREE, DESTROY = 6, 10, 11, 14, 15, 16
ATTACH, DETACH, SIGNAL, STATS, BAD, FAULTS, VERIFY = 17, 18, 19, 20, 21, 22, 23


def op(code, slot=0, *args):
    return bytes([code | (slot << 5)]) + b"".join(args)


def u16(v):
    return struct.pack("<H", v & 0xFFFF)


def b(v):
    return bytes([v & 0xFF])


def size_arg(size):        # fuzz_ops: size = u16 - 1024 for init
    return u16(size + 1024)


seeds = {}
s = op(INIT_ANY)
for n, size in enumerate([1, 8, 16, 17, 88, 96, 184, 200, 1000, 4088, 4089, 0, 4096]):
    s += op(ALLOC, 0, u16(size))
for i in range(11):
    s += op(STATS, 0, b(i + 4))
s += op(STATS, 0, b(0)) + op(STATS, 0, b(40))
s += op(VERIFY) + op(FREE, 0, b(3)) + op(FREE_RCU, 0, b(1)) + op(RAW_FREE, 0, b(0))
s += op(FREE, 0, b(0)) * 4 + op(DESTROY) + op(DESTROY)
seeds["any-size"] = s

s = op(INIT_FIXED, 1, size_arg(40))
s += (op(ALLOC, 1, u16(0)) + op(ALLOC_KERNEL, 1, u16(0))) * 8
s += op(FREE, 1, b(2)) + op(FREE_RCU, 1, b(1)) + op(RAW_FREE, 1, b(0)) + op(STATS, 1, b(4))
s += op(INIT_FIXED, 2, size_arg(5000)) + op(ALLOC_KERNEL, 2, u16(0)) * 3
s += op(INIT_FIXED, 3, size_arg(-5)) + op(DESTROY, 1)
seeds["fixed"] = s

s = op(INIT_PCPU, 0, size_arg(48)) + op(ALLOC, 0, u16(0)) * 5 + op(ALLOC_KERNEL, 0, u16(0))
s += op(FREE, 0, b(1)) + op(FREE_RCU, 0, b(0)) + op(STATS, 0, b(4))
s += op(INIT_PCPU, 1, size_arg(0)) + op(INIT_PCPU, 1, size_arg(4097))
seeds["percpu-fixed"] = s

s = op(INIT_PCPU_ANY, 2) + op(UNIT_INIT, 2, u16(64 + 16)) + op(UNIT_INIT, 2, u16(4096 + 16))
s += op(UNIT_INIT, 2, u16(16)) + op(UNIT_INIT, 2, u16(5000))
s += op(ALLOC, 2, u16(50)) * 3 + op(ALLOC, 2, u16(4000)) * 2 + op(ALLOC, 2, u16(200))
s += op(STATS, 2, b(4 + 4))
s += op(STATS, 2, b(4 + 3)) + op(FREE, 2, b(0)) + op(FREE_RCU, 2, b(0)) + op(DESTROY, 2)
seeds["percpu-any"] = s

s = op(INIT_ANY, 0) + op(INIT_FIXED, 1, size_arg(100))
s += (op(ALLOC, 0, u16(64)) + op(ALLOC, 1, u16(0))) * 6
s += (op(SIGNAL, 0, b(3)) + op(SIGNAL, 1, b(0)) + op(SIGNAL, 2, b(1))) * 4
s += op(VERIFY, 0) + op(VERIFY, 1)
seeds["signals"] = s

s = op(BAD, 0, u16(4088), b(0x55)) + op(BAD, 0, u16(4089), b(0)) + op(BAD, 0, u16(4097), b(7))
s += op(INIT_ANY, 3) + op(INIT_ANY, 3) + op(INIT_FIXED, 3, size_arg(8)) + op(UNIT_INIT, 3, u16(80))
s += op(ALLOC, 1, u16(8)) + op(FREE, 1, b(0)) + op(DESTROY, 1) + op(STATS, 1, b(4))
seeds["bad-inputs"] = s

s = op(FAULTS, 0, b(1), b(1)) + op(INIT_ANY, 0) + op(INIT_FIXED, 1, size_arg(24))
s += op(FAULTS, 0, b(1), b(2)) + (op(ALLOC, 0, u16(300)) + op(ALLOC_KERNEL, 1, u16(0))) * 10
s += op(INIT_PCPU, 2, size_arg(16)) + op(ALLOC_KERNEL, 2, u16(0)) * 4
s += op(FAULTS, 0, b(0)) + op(INIT_ANY, 3) + op(ALLOC, 3, u16(10)) * 3
seeds["faults"] = s

s = op(INIT_ANY, 0) + op(ATTACH, 0, b(8 + 3), b(0)) + op(ALLOC, 0, u16(30)) * 4
s += op(ATTACH, 0, b(8 + 5), b(2)) + op(ATTACH, 0, b(0), b(0)) + op(ATTACH, 0, b(255), b(0))
s += op(DETACH) + op(ALLOC, 0, u16(30)) * 2 + op(FREE, 0, b(0)) * 3 + op(ATTACH, 0, b(8 + 3), b(0))
seeds["attach-detach"] = s

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(data)
