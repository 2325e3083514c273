//! Reading /proc/<pid>/stat: a process's state letter and start time, which together with the pid
//! identify the process the state file recorded (a recycled pid has another start time).

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub start_time: u64,
}

pub fn stat(pid: i32) -> Option<ProcStat> {
    stat_at(&Path::new("/proc").join(pid.to_string()))
}

pub fn stat_at(dir: &Path) -> Option<ProcStat> {
    let text = std::fs::read_to_string(dir.join("stat")).ok()?;
    parse(&text)
}

fn parse(text: &str) -> Option<ProcStat> {
    // The command name may contain spaces and ')', so fields are counted after the last ')'.
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // starttime is field 22 of stat; after "pid (comm)" it is the 20th.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// How many processes [`descendants`] lists at most: a fork bomb must not make us loop forever.
const MAX_DESCENDANTS: usize = 65536;

/// `pid` and every process below it, from /proc/<pid>/task/*/children (parents before children).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut found = vec![pid];
    let mut next = 0;
    while next < found.len() && found.len() < MAX_DESCENDANTS {
        let parent = found[next];
        next += 1;
        let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).into_iter().flatten().flatten();
        for task in tasks {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            found.extend(children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
        }
    }
    found.truncate(MAX_DESCENDANTS);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_odd_names() {
        let line = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 184467";
        let stat = parse(line).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.start_time, 98765);
    }

    #[test]
    fn self_is_alive_with_a_start_time() {
        // The test harness's main thread may be sleeping while this test's thread runs.
        let me = stat(std::process::id() as i32).unwrap();
        assert!(matches!(me.state, 'R' | 'S'), "{me:?}");
        assert!(me.start_time > 0);
    }
}
