//! One atomic commit for a connection's tables and cookie, through a journal.
//!
//! The new tables are staged in `ExportOutput/.staging-<id>_XXXXXX/`, the new cookie beside the
//! old one as `ExportCookies/<id>.cookie.new`. The commit then:
//! 1. writes the journal `ExportCookies/<id>.journal` (state `prepared`: every move, and whether
//!    an old file existed), durably;
//! 2. moves each old file into the staging folder as `<file>.old` (the cookie to
//!    `<id>.cookie.old`);
//! 3. moves each new file into place, and makes the folders durable;
//! 4. renames the journal to `ExportCookies/<id>.committed`, durably: this is the commit point
//!    (a rename, where a second journal written would be one more file created and deleted
//!    per export: file creation is what a busy server's file system spends most on);
//! 5. removes the staging folder, the old cookie and the journal (not synced: a journal a
//!    crash brings back is finished again by [`recover`]).
//!
//! Every step is a rename or an atomic write, so a crash leaves a state that [`recover`] (run
//! before every export of the connection) turns into the whole old set (`<id>.journal`: roll
//! back) or the whole new set (`<id>.committed`, or a journal whose state is `committed`, as
//! idlink wrote them before: roll forward).

use std::fs;
use std::io::ErrorKind as IoKind;
use std::path::{Path, PathBuf};

use idlink_packages::output::{folder_of, sync_dir, write_atomic};
use serde::{Deserialize, Serialize};

use crate::EngineError;

/// One file to move into place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The new file (staged).
    pub from: PathBuf,
    /// Where it goes.
    pub to: PathBuf,
    /// Where the old file is kept until the commit point.
    pub backup: PathBuf,
    /// Whether an old file existed at `to`.
    pub had_old: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Prepared,
    Committed,
}

/// The commit journal of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub connection: String,
    pub state: State,
    /// Removed once the commit is complete (holds the backups).
    pub staging: PathBuf,
    pub moves: Vec<Move>,
}

/// Where the journal of `connection` lives.
pub fn journal_path(cookies_dir: &Path, connection: &str) -> PathBuf {
    cookies_dir.join(format!("{connection}.journal"))
}

/// What the journal `journal_file` is renamed to at the commit point.
fn committed_path(journal_file: &Path) -> PathBuf {
    journal_file.with_extension("committed")
}

/// A step of the commit, for crash tests: [`commit`] stops before the given step.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Never,
    /// Stop after `n` renames (old files out, then new files in).
    AfterRenames(usize),
    /// Stop right after the commit point, the journal renamed (before clean-up).
    AfterCommitPoint,
}

fn io(operation: &'static str, path: &Path, e: std::io::Error) -> EngineError {
    EngineError::io(operation, path, e)
}

/// Writes the journal atomically (a temp file renamed over it), synced when `durable`.
fn write_journal_with(path: &Path, journal: &Journal, durable: bool) -> Result<(), EngineError> {
    let bytes = serde_json::to_vec_pretty(journal)
        .map_err(|e| EngineError::Contract(format!("cannot encode the commit journal: {e}")))?;
    if durable {
        return write_atomic(path, &bytes).map_err(|e| io("write the commit journal", path, e));
    }
    let tmp = path.with_extension("journal.tmp");
    fs::write(&tmp, &bytes)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| io("write the commit journal", path, e))
}

/// Checks that every target is a regular file or absent: a folder or a link where a table
/// goes is refused before anything moves.
pub fn check_targets(moves: &[Move]) -> Result<(), EngineError> {
    for m in moves {
        match fs::symlink_metadata(&m.to) {
            Ok(meta) if meta.is_file() => {}
            Ok(meta) => {
                let what = if meta.is_dir() {
                    "a folder"
                } else if meta.file_type().is_symlink() {
                    "a symbolic link"
                } else {
                    "not a regular file"
                };
                return Err(EngineError::io(
                    "replace",
                    &m.to,
                    std::io::Error::other(format!(
                        "it is {what}; move it away so the new table can take its place"
                    )),
                ));
            }
            Err(e) if e.kind() == IoKind::NotFound => {}
            Err(e) => return Err(io("inspect", &m.to, e)),
        }
    }
    Ok(())
}

/// Makes the renames in every folder the moves touch durable.
fn sync_parents(moves: &[Move]) -> Result<(), EngineError> {
    let mut dirs: Vec<&Path> = Vec::new();
    for m in moves {
        for d in [folder_of(&m.to), folder_of(&m.backup), folder_of(&m.from)] {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    for d in dirs {
        match sync_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == IoKind::NotFound => {}
            Err(e) => return Err(io("sync", d, e)),
        }
    }
    Ok(())
}

fn rename(from: &Path, to: &Path) -> Result<(), EngineError> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    }
    fs::rename(from, to).map_err(|e| io("move", from, e).with_target(to))
}

impl EngineError {
    fn with_target(self, to: &Path) -> Self {
        match self {
            EngineError::Io {
                operation,
                path,
                source,
            } => EngineError::Io {
                operation,
                path,
                source: std::io::Error::new(
                    source.kind(),
                    format!("to '{}': {source}", to.display()),
                ),
            },
            other => other,
        }
    }
}

/// Commits `moves` as one set (see the module documentation). On failure before the commit
/// point everything is rolled back; the error says whether that worked.
pub fn commit(
    journal_file: &Path,
    connection: &str,
    staging: &Path,
    moves: Vec<Move>,
    stop: Stop,
) -> Result<(), EngineError> {
    commit_with(journal_file, connection, staging, moves, stop, true)
}

/// [`commit`]; with `durable` false nothing is synced to disk (the set is still all or
/// nothing for readers, but a machine crash may lose it): for a copy another process keeps
/// durably, such as an agent's temporary export the server commits.
pub fn commit_with(
    journal_file: &Path,
    connection: &str,
    staging: &Path,
    moves: Vec<Move>,
    stop: Stop,
    durable: bool,
) -> Result<(), EngineError> {
    check_targets(&moves)?;
    let journal = Journal {
        connection: connection.to_string(),
        state: State::Prepared,
        staging: staging.to_path_buf(),
        moves,
    };
    write_journal_with(journal_file, &journal, durable)?;
    let moved = do_moves(&journal.moves, stop, durable);
    match moved {
        Ok(true) => {}
        // A simulated crash: leave everything as it is for `recover`.
        Ok(false) => return Ok(()),
        Err(e) => {
            return Err(failed(journal_file, &journal, e));
        }
    }
    let committed = committed_path(journal_file);
    let point = rename(journal_file, &committed).and_then(|()| {
        if durable {
            sync_dir(folder_of(&committed)).map_err(|e| io("sync", &committed, e))
        } else {
            Ok(())
        }
    });
    if let Err(e) = point {
        // Not known to be committed: roll back to the old set.
        let _ = fs::rename(&committed, journal_file);
        return Err(failed(journal_file, &journal, e));
    }
    if stop == Stop::AfterCommitPoint {
        return Ok(());
    }
    // Committed: clean-up failures only leave files the next run removes.
    if let Err(e) = finish(&committed, &journal) {
        tracing::warn!(connection, error = %e, "clean-up after the commit is incomplete; the next export finishes it");
    }
    Ok(())
}

/// Steps 2 and 3: old files out, new files in, folders durable. `Ok(false)`: a simulated crash.
fn do_moves(moves: &[Move], stop: Stop, durable: bool) -> Result<bool, EngineError> {
    let mut renames = 0usize;
    let pairs = moves
        .iter()
        .filter(|m| m.had_old)
        .map(|m| (&m.to, &m.backup))
        .chain(moves.iter().map(|m| (&m.from, &m.to)));
    for (from, to) in pairs {
        if stop == Stop::AfterRenames(renames) {
            return Ok(false);
        }
        rename(from, to)?;
        renames += 1;
    }
    if stop == Stop::AfterRenames(renames) {
        return Ok(false);
    }
    if durable {
        sync_parents(moves)?;
    }
    Ok(true)
}

/// A commit that failed before its commit point: roll back, and say truthfully what is left.
fn failed(journal_file: &Path, journal: &Journal, e: EngineError) -> EngineError {
    let connection = &journal.connection;
    let (outcome, restored) = match roll_back(journal) {
        Ok(()) => {
            let _ = fs::remove_file(journal_file);
            (
                "the previous tables and cookie were put back; nothing changed".to_string(),
                true,
            )
        }
        Err(back) => (
            format!(
                "putting the previous tables back failed too ({back}); the next export of \
                 '{connection}' finishes the roll-back from {}",
                journal_file.display()
            ),
            false,
        ),
    };
    EngineError::Commit {
        connection: connection.clone(),
        message: e.to_string(),
        outcome,
        restored,
    }
}

/// Puts the old files back (journal `prepared`). Idempotent.
fn roll_back(journal: &Journal) -> Result<(), EngineError> {
    for m in journal.moves.iter().rev() {
        if m.had_old {
            if m.backup.exists() {
                rename(&m.backup, &m.to)?;
            }
        } else if !m.from.exists() && m.to.exists() {
            // The new file was moved in where none was: it is not part of the old set.
            fs::remove_file(&m.to).map_err(|e| io("remove", &m.to, e))?;
        }
    }
    sync_parents(&journal.moves)?;
    Ok(())
}

/// Removes what a complete or undone commit leaves: backups and new files kept outside the
/// staging folder (the old or new cookie), the staging folder, then the journal. Nothing here
/// is synced to disk: should a crash bring the journal back, [`recover`] does this again (a
/// committed journal rolls forward, a prepared one back, both idempotent), and the set in
/// place is already durable.
fn finish(journal_file: &Path, journal: &Journal) -> Result<(), EngineError> {
    for m in &journal.moves {
        // After a roll-back the new files that were not moved are left over too.
        for leftover in [&m.backup, &m.from] {
            match fs::remove_file(leftover) {
                Ok(()) => {}
                Err(e) if e.kind() == IoKind::NotFound => {}
                Err(e) => return Err(io("remove", leftover, e)),
            }
        }
    }
    match fs::remove_dir_all(&journal.staging) {
        Ok(()) => {}
        Err(e) if e.kind() == IoKind::NotFound => {}
        Err(e) => return Err(io("remove", &journal.staging, e)),
    }
    match fs::remove_file(journal_file) {
        Ok(()) => {}
        Err(e) if e.kind() == IoKind::NotFound => {}
        Err(e) => return Err(io("remove", journal_file, e)),
    }
    Ok(())
}

/// A journal moves and removes files: before acting on one, check that it names only files
/// of its connection in the folders a commit uses (the output folder, its staging folder, the
/// cookies folder), so a planted or altered journal cannot make recovery touch anything else.
fn check_journal(journal_file: &Path, j: &Journal) -> Result<(), String> {
    use std::path::Component;
    let id = j.connection.to_ascii_lowercase();
    let stem = journal_file
        .file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_ascii_lowercase);
    if id.is_empty() || id.contains(['/', '\\', '_']) || stem.as_deref() != Some(id.as_str()) {
        return Err(format!(
            "it is for connection '{}', not the one its file name says",
            j.connection
        ));
    }
    let cookies = folder_of(journal_file);
    let staging = j.staging.as_path();
    let staging_ok = staging
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| {
            n.to_ascii_lowercase()
                .starts_with(&format!(".staging-{id}"))
        });
    let Some(out) = staging.parent().filter(|_| staging_ok) else {
        return Err(format!(
            "its staging folder '{}' is not a staging folder of '{}'",
            staging.display(),
            j.connection
        ));
    };
    // Backups are in the staging folder (in its `old/` when an earlier idlink wrote them).
    let old = staging.join("old");
    let of_connection = |p: &Path, dirs: &[&Path]| {
        !p.components().any(|c| matches!(c, Component::ParentDir))
            && p.parent().is_some_and(|d| dirs.contains(&d))
            && p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.to_ascii_lowercase().starts_with(&id))
    };
    for m in &j.moves {
        let ok = of_connection(&m.to, &[out, cookies])
            && of_connection(&m.from, &[staging, cookies])
            && of_connection(&m.backup, &[staging, old.as_path(), cookies]);
        if !ok {
            return Err(format!(
                "it names files outside the folders of a commit of '{}' ('{}')",
                j.connection,
                m.to.display()
            ));
        }
    }
    Ok(())
}

/// What [`recover`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// No interrupted commit.
    Nothing,
    /// An interrupted commit had not reached its commit point: the old set was put back.
    RolledBack,
    /// An interrupted commit had reached its commit point: its clean-up was finished.
    RolledForward,
}

/// Finishes or undoes an interrupted commit of the connection whose journal is `journal_file`
/// (`<id>.journal`; renamed `<id>.committed` at the commit point).
pub fn recover(journal_file: &Path) -> Result<Recovery, EngineError> {
    // Both are there only if a commit point was reached and a later journal written before
    // the recovery that comes first: the older commit is finished first.
    let mut done = Recovery::Nothing;
    for (path, committed) in [
        (committed_path(journal_file), true),
        (journal_file.to_path_buf(), false),
    ] {
        match recover_one(&path, committed)? {
            Recovery::Nothing => {}
            r => done = r,
        }
    }
    Ok(done)
}

/// [`recover`] of one journal file; `committed` when its name says the commit point was reached.
fn recover_one(journal_file: &Path, committed: bool) -> Result<Recovery, EngineError> {
    let bytes = match fs::read(journal_file) {
        Ok(b) => b,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(Recovery::Nothing),
        Err(e) => return Err(io("read the commit journal", journal_file, e)),
    };
    let journal: Journal = serde_json::from_slice(&bytes).map_err(|e| {
        EngineError::io(
            "read the commit journal",
            journal_file,
            std::io::Error::other(format!(
                "it is damaged ({e}); it was written atomically, so something else changed it: \
                 compare the tables with their previous copies, then remove it"
            )),
        )
    })?;
    if let Err(why) = check_journal(journal_file, &journal) {
        return Err(EngineError::io(
            "trust the commit journal",
            journal_file,
            std::io::Error::other(format!(
                "{why}; idlink writes no such journal, so nothing was moved or removed: \
                 find out who wrote it, then remove it"
            )),
        ));
    }
    if committed || journal.state == State::Committed {
        finish(journal_file, &journal)?;
        return Ok(Recovery::RolledForward);
    }
    roll_back(&journal)?;
    finish(journal_file, &journal)?;
    Ok(Recovery::RolledBack)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Set {
        _dir: tempfile::TempDir,
        out: PathBuf,
        cookies: PathBuf,
    }

    fn set() -> Set {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ExportOutput");
        let cookies = dir.path().join("ExportCookies");
        fs::create_dir_all(&out).unwrap();
        fs::create_dir_all(&cookies).unwrap();
        Set {
            _dir: dir,
            out,
            cookies,
        }
    }

    const FILES: [&str; 3] = ["D_entries.csv", "D_member.csv", "D.cookie"];

    fn target(s: &Set, name: &str) -> PathBuf {
        if name.ends_with(".cookie") {
            s.cookies.join(name)
        } else {
            s.out.join(name)
        }
    }

    fn write_old(s: &Set) {
        for f in FILES {
            fs::write(target(s, f), format!("old {f}")).unwrap();
        }
    }

    /// Stages the new set and returns its moves.
    fn stage(s: &Set, with_old: bool) -> (PathBuf, Vec<Move>) {
        let staging = s.out.join(".staging-D_abcdef");
        fs::create_dir_all(&staging).unwrap();
        let mut moves = Vec::new();
        for f in FILES {
            let from = if f.ends_with(".cookie") {
                s.cookies.join(format!("{f}.new"))
            } else {
                staging.join(f)
            };
            fs::write(&from, format!("new {f}")).unwrap();
            let backup = if f.ends_with(".cookie") {
                s.cookies.join(format!("{f}.old"))
            } else {
                staging.join(format!("{f}.old"))
            };
            moves.push(Move {
                from,
                to: target(s, f),
                backup,
                had_old: with_old,
            });
        }
        (staging, moves)
    }

    /// "old", "new", or a mixture (a failure).
    fn which(s: &Set) -> String {
        let seen: Vec<String> = FILES
            .iter()
            .map(|f| match fs::read_to_string(target(s, f)) {
                Ok(t) => t.split(' ').next().unwrap().to_string(),
                Err(_) => "absent".to_string(),
            })
            .collect();
        if seen.iter().all(|x| x == &seen[0]) {
            seen[0].clone()
        } else {
            format!("mixed {seen:?}")
        }
    }

    fn leftovers(s: &Set) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&s.out)
            .unwrap()
            .chain(fs::read_dir(&s.cookies).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !FILES.contains(&n.as_str()))
            .collect();
        names.sort();
        names
    }

    /// Every step, with the backups beside the staged tables and (as an earlier idlink kept
    /// them, a journal of which a crash may leave) in the staging folder's `old/`.
    #[test]
    fn a_crash_at_every_step_leaves_the_old_or_the_new_set_after_recovery() {
        for (with_old, in_old_folder) in [(true, false), (false, false), (true, true)] {
            let renames = if with_old { 6 } else { 3 };
            let mut stops: Vec<Stop> = (0..=renames).map(Stop::AfterRenames).collect();
            stops.push(Stop::AfterCommitPoint);
            for stop in stops {
                let s = set();
                if with_old {
                    write_old(&s);
                }
                let (staging, mut moves) = stage(&s, with_old);
                for m in moves.iter_mut().filter(|_| in_old_folder) {
                    if m.backup.parent() == Some(staging.as_path()) {
                        let name = m.backup.file_stem().unwrap().to_owned();
                        m.backup = staging.join("old").join(name);
                    }
                }
                let journal = journal_path(&s.cookies, "D");
                commit(&journal, "D", &staging, moves, stop).unwrap();
                let recovered = recover(&journal).unwrap();
                let expect = match (stop, with_old) {
                    (Stop::AfterCommitPoint, _) => "new",
                    (_, true) => "old",
                    (_, false) => "absent",
                };
                assert_eq!(which(&s), expect, "stop {stop:?} (old set: {with_old})");
                assert_ne!(recovered, Recovery::Nothing, "{stop:?}");
                assert!(leftovers(&s).is_empty(), "{stop:?}: {:?}", leftovers(&s));
                // Recovery is idempotent.
                assert_eq!(recover(&journal).unwrap(), Recovery::Nothing);
            }
        }
    }

    /// idlink wrote the commit point as a second journal, state `committed`, under the
    /// journal's own name: such a journal left by a crash still rolls forward.
    #[test]
    fn a_journal_committed_the_earlier_way_rolls_forward() {
        let s = set();
        write_old(&s);
        let (staging, moves) = stage(&s, true);
        let journal = journal_path(&s.cookies, "D");
        commit(&journal, "D", &staging, moves, Stop::AfterCommitPoint).unwrap();
        let committed = committed_path(&journal);
        let mut j: Journal = serde_json::from_slice(&fs::read(&committed).unwrap()).unwrap();
        assert_eq!(j.state, State::Prepared, "the state is in the name now");
        j.state = State::Committed;
        fs::write(&journal, serde_json::to_vec(&j).unwrap()).unwrap();
        fs::remove_file(&committed).unwrap();
        assert_eq!(recover(&journal).unwrap(), Recovery::RolledForward);
        assert_eq!(which(&s), "new");
        assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
    }

    #[test]
    fn regression_a_planted_journal_cannot_make_recovery_touch_other_files() {
        let s = set();
        write_old(&s);
        let victim = s.out.parent().unwrap().join("precious.txt");
        fs::write(&victim, "keep me").unwrap();
        let (staging, mut moves) = stage(&s, false);
        // A journal that "rolls back" a new file where the victim is.
        moves[0].to = victim.clone();
        fs::remove_file(&moves[0].from).unwrap();
        let journal = journal_path(&s.cookies, "D");
        let planted = Journal {
            connection: "D".into(),
            state: State::Prepared,
            staging,
            moves,
        };
        fs::write(&journal, serde_json::to_vec(&planted).unwrap()).unwrap();
        let e = recover(&journal).unwrap_err();
        assert!(e.to_string().contains("outside the folders"), "{e}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        // A journal for another connection, or with `..`, is refused too.
        let (staging, moves) = stage(&s, true);
        let mut other = Journal {
            connection: "Other".into(),
            state: State::Committed,
            staging: staging.clone(),
            moves: moves.clone(),
        };
        fs::write(&journal, serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(recover(&journal).is_err());
        other.connection = "D".into();
        other.moves[1].backup = s.cookies.join("..").join("ExportCookies").join("D.x");
        fs::write(&journal, serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(recover(&journal).is_err());
        assert!(staging.exists(), "nothing was removed");
    }

    #[test]
    fn a_complete_commit_leaves_the_new_set_and_nothing_else() {
        let s = set();
        write_old(&s);
        let (staging, moves) = stage(&s, true);
        let journal = journal_path(&s.cookies, "D");
        commit(&journal, "D", &staging, moves, Stop::Never).unwrap();
        assert_eq!(which(&s), "new");
        assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
    }

    #[test]
    fn a_volatile_commit_leaves_the_new_set_and_nothing_else_too() {
        let s = set();
        write_old(&s);
        let (staging, moves) = stage(&s, true);
        let journal = journal_path(&s.cookies, "D");
        commit_with(&journal, "D", &staging, moves, Stop::Never, false).unwrap();
        assert_eq!(which(&s), "new");
        assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
    }

    #[test]
    fn regression_a_folder_where_a_table_goes_is_refused_before_anything_moves() {
        let s = set();
        write_old(&s);
        fs::remove_file(s.out.join("D_member.csv")).unwrap();
        fs::create_dir(s.out.join("D_member.csv")).unwrap();
        let (staging, mut moves) = stage(&s, true);
        moves[1].had_old = true;
        let journal = journal_path(&s.cookies, "D");
        let e = commit(&journal, "D", &staging, moves, Stop::Never).unwrap_err();
        assert!(e.to_string().contains("is a folder"), "{e}");
        assert_eq!(
            fs::read_to_string(s.out.join("D_entries.csv")).unwrap(),
            "old D_entries.csv"
        );
        assert!(!journal.exists());
    }

    #[test]
    fn regression_a_failed_move_is_rolled_back_and_says_so() {
        let s = set();
        write_old(&s);
        let (staging, moves) = stage(&s, true);
        // The cookie's new file vanishes: the third move in fails after two tables moved.
        fs::remove_file(&moves[2].from).unwrap();
        let journal = journal_path(&s.cookies, "D");
        let e = commit(&journal, "D", &staging, moves, Stop::Never).unwrap_err();
        assert!(
            e.to_string().contains("were put back; nothing changed"),
            "{e}"
        );
        assert!(!e.nothing_committed() || which(&s) == "old");
        assert_eq!(which(&s), "old");
        assert!(!journal.exists());
    }
}
