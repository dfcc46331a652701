//! The standard `process_*` series, read from `/proc/self` at scrape time
//! (Linux only; elsewhere they are absent). Reading a few small files per
//! scrape is cheaper than any crate that would do it, and keeps nothing
//! running between scrapes.

use std::path::Path;

/// Clock ticks per second in `/proc/self/stat`: `USER_HZ`, which Linux fixes
/// at 100 in its user ABI on every architecture it runs containers on.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading; a value that could not be read is `None` and not exported.
#[derive(Debug, Default, PartialEq)]
pub struct Process {
    pub resident_memory_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

impl Process {
    pub fn read() -> Process {
        Process::read_from(Path::new("/proc"))
    }

    fn read_from(proc: &Path) -> Process {
        let file = |name: &str| std::fs::read_to_string(proc.join(name)).ok();
        let stat = file("self/stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // utime, stime and starttime are fields 14, 15 and 22 of stat(5); `fields` starts at field 3.
        let ticks = |field: usize| fields.get(field - 3).and_then(|v| v.parse::<u64>().ok());
        let cpu_seconds = ticks(14).zip(ticks(15)).map(|(user, system)| (user + system) as f64 / TICKS_PER_SECOND);
        let boot_time = file("stat").and_then(|s| field_after(&s, "btime"));
        let start_time_seconds =
            boot_time.zip(ticks(22)).map(|(boot, start)| boot as f64 + start as f64 / TICKS_PER_SECOND);
        let resident_memory_bytes = file("self/status").and_then(|s| field_after(&s, "VmRSS:")).map(|kib| kib * 1024);
        let open_fds = std::fs::read_dir(proc.join("self/fd")).ok().map(|entries| entries.count() as u64);
        let max_fds = file("self/limits").and_then(|s| field_after(&s, "Max open files"));
        Process { resident_memory_bytes, cpu_seconds, open_fds, max_fds, start_time_seconds }
    }
}

/// The number after `label` on the line that starts with it.
fn field_after(text: &str, label: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(label)).and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_proc_tree() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path();
        std::fs::create_dir_all(proc.join("self/fd")).unwrap();
        for fd in ["0", "1", "2", "7"] {
            std::fs::write(proc.join("self/fd").join(fd), "").unwrap();
        }
        // A command name with a space and a parenthesis, as a process may have.
        let mut stat = String::from("4242 (jwt gate) S");
        for field in 4..=52 {
            let value = match field {
                14 => 250,   // utime
                15 => 50,    // stime
                22 => 12345, // starttime
                _ => 1,
            };
            stat.push_str(&format!(" {value}"));
        }
        std::fs::write(proc.join("self/stat"), stat).unwrap();
        std::fs::write(proc.join("stat"), "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n").unwrap();
        std::fs::write(proc.join("self/status"), "Name:\tjwtgate\nVmRSS:\t   20480 kB\nThreads:\t3\n").unwrap();
        std::fs::write(
            proc.join("self/limits"),
            "Limit                     Soft Limit           Hard Limit           Units\n\
             Max open files            1024                 524288               files\n",
        )
        .unwrap();
        let read = Process::read_from(proc);
        assert_eq!(
            read,
            Process {
                resident_memory_bytes: Some(20480 * 1024),
                cpu_seconds: Some(3.0),
                open_fds: Some(4),
                max_fds: Some(1024),
                start_time_seconds: Some(1_700_000_123.45),
            }
        );
        assert_eq!(Process::read_from(&proc.join("absent")), Process::default());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let read = Process::read();
        assert!(read.resident_memory_bytes.is_some_and(|b| b > 1024 * 1024), "{read:?}");
        assert!(read.open_fds.is_some_and(|n| n >= 3), "{read:?}");
        assert!(read.cpu_seconds.is_some_and(|s| s >= 0.0), "{read:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(read.start_time_seconds.is_some_and(|t| t <= now + 1.0 && t > now - 86_400.0), "{read:?}");
    }
}
