//! The devices "controller" of cgroup v2: an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE,
//! generated from the runtime-spec device rules and attached to the container's cgroup.
//!
//! Written here because the job is small and fixed (a straight-line filter of a dozen
//! instructions per rule) and a general eBPF crate would bring a loader and an ELF toolchain for it.
//!
//! Semantics match the v1 controller: rules are read in order and the last matching rule decides;
//! the generated program checks them in reverse and returns on the first match, denying by default.

use crate::devices::DeviceRule;
use crate::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// struct bpf_insn
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high one
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

// Opcodes (class | op | source), from linux/bpf_common.h.
const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_K: u8 = 0xb4;
const ALU32_MOV_X: u8 = 0xbc;
const JMP_JNE_K: u8 = 0x55;
const JMP_JNE_X: u8 = 0x5d;
const JMP_EXIT: u8 = 0x95;

// bpf_cgroup_dev_ctx: access_type (type | access << 16), major, minor.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

fn access_bits(access: &str) -> i32 {
    access.chars().fold(0, |bits, c| {
        bits | match c {
            'm' => ACC_MKNOD,
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => 0,
        }
    })
}

/// Compiles rules into the filter program.
pub(crate) fn compile(rules: &[DeviceRule]) -> Vec<Insn> {
    // r2 = device type, r3 = requested access, r4 = major, r5 = minor.
    let mut program = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        let mut checks: Vec<Vec<Insn>> = Vec::new();
        match rule.kind {
            'b' => checks.push(vec![insn(JMP_JNE_K, 2, 0, 0, DEV_BLOCK)]),
            'c' => checks.push(vec![insn(JMP_JNE_K, 2, 0, 0, DEV_CHAR)]),
            _ => {}
        }
        let bits = access_bits(&rule.access);
        if bits != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // Matches only if every requested access bit is in the rule: (r3 & bits) == r3.
            checks.push(vec![insn(ALU32_MOV_X, 1, 3, 0, 0), insn(ALU32_AND_K, 1, 0, 0, bits), insn(JMP_JNE_X, 1, 3, 0, 0)]);
        }
        if let Some(major) = rule.major {
            checks.push(vec![insn(JMP_JNE_K, 4, 0, 0, major as i32)]);
        }
        if let Some(minor) = rule.minor {
            checks.push(vec![insn(JMP_JNE_K, 5, 0, 0, minor as i32)]);
        }
        let unconditional = checks.is_empty();
        let mut block: Vec<Insn> = checks.into_iter().flatten().collect();
        block.push(insn(ALU32_MOV_K, 0, 0, 0, i32::from(rule.allow)));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        // Every failed check jumps past the rest of this block, to the next rule.
        let len = block.len();
        for (i, instruction) in block.iter_mut().enumerate() {
            if instruction.code == JMP_JNE_K || instruction.code == JMP_JNE_X {
                instruction.off = (len - i - 1) as i16;
            }
        }
        program.extend(block);
        // A rule matching everything ends the program: the verifier refuses unreachable code.
        if unconditional {
            return program;
        }
    }
    program.push(insn(ALU32_MOV_K, 0, 0, 0, 0));
    program.push(insn(JMP_EXIT, 0, 0, 0, 0));
    program
}

// bpf(2) commands and constants, from linux/bpf.h.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The prefix of `union bpf_attr` each command uses; the kernel zero-checks the rest of its size.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: attr is a #[repr(C)] prefix of union bpf_attr, valid for its size, which we pass.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Loads the program for `rules` and makes it the only device program on the cgroup at `dir`.
pub(crate) fn apply(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let program = compile(rules);
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 64 * 1024];
    let mut load = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..Default::default()
    };
    let fd = bpf(BPF_PROG_LOAD, &mut load).map_err(|e| {
        let verifier = String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)]).trim().to_string();
        Error::io("load device eBPF program for", dir, std::io::Error::new(e.kind(), format!("{e}; verifier: {verifier}")))
    })?;
    // SAFETY: the kernel returned a new program fd owned by us.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cgroup = std::fs::File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    let old = attached_programs(&cgroup)?;
    let mut attach = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attach).map_err(|e| Error::io("attach device eBPF program to", dir, e))?;
    // Attached programs all have to allow an access: the previous ones go once the new one is in.
    for old_prog in old {
        let mut detach = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: old_prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        bpf(BPF_PROG_DETACH, &mut detach).map_err(|e| Error::io("detach old device eBPF program from", dir, e))?;
    }
    Ok(())
}

fn attached_programs(cgroup: &std::fs::File) -> Result<Vec<OwnedFd>> {
    let mut ids = [0u32; 64];
    let mut query = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut query).map_err(|e| Error::io("query device eBPF programs of", "cgroup", e))?;
    ids[..(query.prog_cnt as usize).min(ids.len())]
        .iter()
        .map(|id| {
            let mut get = GetFdAttr { prog_id: *id, ..Default::default() };
            let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut get).map_err(|e| Error::io("open device eBPF program", format!("id {id}"), e))?;
            // SAFETY: a new fd from the kernel, owned by us.
            Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allow: bool, kind: char, major: Option<u32>, minor: Option<u32>, access: &str) -> DeviceRule {
        DeviceRule { allow, kind, major, minor, access: access.into() }
    }

    /// Runs the program in a tiny interpreter of the instructions we emit.
    fn eval(program: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> u32 {
        let ctx = [(kind | (access << 16)) as u32, major, minor];
        let mut regs = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = program[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => regs[dst] = u64::from(ctx[i.off as usize / 4]),
                ALU32_AND_K => regs[dst] = (regs[dst] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => regs[dst] = ((regs[dst] as u32) >> i.imm) as u64,
                ALU32_MOV_K => regs[dst] = i.imm as u32 as u64,
                ALU32_MOV_X => regs[dst] = regs[src] as u32 as u64,
                JMP_JNE_K if regs[dst] != i.imm as u32 as u64 => pc += i.off as usize,
                JMP_JNE_X if regs[dst] != regs[src] => pc += i.off as usize,
                JMP_JNE_K | JMP_JNE_X => {}
                JMP_EXIT => return regs[0] as u32,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn last_matching_rule_wins_and_default_denies() {
        let rules = [rule(false, 'a', None, None, "rwm"), rule(true, 'c', Some(1), Some(3), "rwm"), rule(true, 'c', Some(136), None, "rw")];
        let program = compile(&rules);
        assert_eq!(eval(&program, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 1, "/dev/null allowed");
        assert_eq!(eval(&program, DEV_BLOCK, ACC_READ, 1, 3), 0, "block 1:3 is another device");
        assert_eq!(eval(&program, DEV_CHAR, ACC_READ, 136, 7), 1, "pts wildcard minor");
        assert_eq!(eval(&program, DEV_CHAR, ACC_MKNOD, 136, 7), 0, "mknod not in rw");
        assert_eq!(eval(&program, DEV_CHAR, ACC_READ, 10, 229), 0, "default deny");
    }

    #[test]
    fn later_deny_overrides_earlier_allow() {
        let rules = [rule(true, 'a', None, None, "rwm"), rule(false, 'c', Some(10), Some(229), "rwm")];
        let program = compile(&rules);
        assert_eq!(eval(&program, DEV_CHAR, ACC_READ, 10, 229), 0);
        assert_eq!(eval(&program, DEV_CHAR, ACC_READ, 1, 5), 1);
    }
}
