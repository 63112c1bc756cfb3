//! Every HDF5 file scllm opens or creates goes through here, so its descriptor is never inherited
//! by a child process.
//!
//! libhdf5 opens files with a plain `open(2)` (no `O_CLOEXEC`) and, from 1.10, holds an `flock`
//! on them while open. A descriptor inherited by a process started meanwhile (a notebook or a test
//! runner spawning `scllm`, a Dask worker starting a job) keeps that lock alive for the child's
//! whole life, and the next open of the same file fails with "unable to lock file, errno = 11".
//! Marking the descriptor close-on-exec right after the open leaves only the few instructions in
//! between as a window, instead of the whole time the file is open — and a fork in that window
//! did hit (a test's write read back while another test spawned `scllm`), so scllm's opens also
//! take no lock (`H5Pset_file_locking(false)`, ignoring it where the file system lacks locks):
//! every file scllm writes is built under a temporary name and renamed into place, so no
//! reader of scllm's ever sees one half-written, and the lock only ever failed opens. (It is
//! what h5py users set with `HDF5_USE_FILE_LOCKING=FALSE` on cluster file systems, where `flock`
//! often fails outright.)

use std::path::Path;

use hdf5::plist::file_access::FileAccessBuilder;
use hdf5::File;

/// `hdf5::File::open` (read-only) without a lock, kept out of child processes.
pub(crate) fn open_read(path: &Path) -> hdf5::Result<File> {
    let f = File::with_options().with_fapl(no_lock).open(path)?;
    close_on_exec(&f);
    Ok(f)
}

/// `hdf5::File::create` (truncating) without a lock, kept out of child processes.
pub(crate) fn create(path: &Path) -> hdf5::Result<File> {
    let f = File::with_options().with_fapl(no_lock).create(path)?;
    close_on_exec(&f);
    Ok(f)
}

fn no_lock(p: &mut FileAccessBuilder) -> &mut FileAccessBuilder {
    p.file_locking(false)
}

/// Best effort: a file on another driver, or a failing call, is left as libhdf5 made it (the
/// file itself works either way).
#[cfg(unix)]
fn close_on_exec(file: &File) {
    use hdf5::plist::file_access::FileDriver;
    use hdf5_sys::{h5f::H5Fget_vfd_handle, h5p::H5P_DEFAULT};
    // Only the POSIX (sec2) driver's handle is a pointer to the `int` descriptor.
    if !matches!(file.fapl().map(|p| p.driver()), Ok(FileDriver::Sec2)) {
        return;
    }
    let _lock = hdf5_sys::LOCK.lock();
    let mut handle: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: the file id is open for the lifetime of `file`; for sec2 libhdf5 sets `handle` to
    // the address of the driver's `int fd`, read once here while the library lock is held.
    let fd = unsafe {
        if H5Fget_vfd_handle(file.id(), H5P_DEFAULT, &mut handle) < 0 || handle.is_null() {
            return;
        }
        *(handle as *const std::ffi::c_int)
    };
    // SAFETY: fcntl on a descriptor this process owns, reading then setting its flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

#[cfg(not(unix))]
fn close_on_exec(_file: &File) {}

#[cfg(all(test, unix))]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    /// A lock held on another open description of the file (as by a child process that
    /// inherited a descriptor) does not stop scllm from reading or replacing it.
    #[test]
    fn a_file_another_descriptor_locks_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.h5");
        drop(create(&p).unwrap());
        let held = std::fs::File::open(&p).unwrap();
        // SAFETY: flock on a descriptor this test owns.
        let locked = unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(locked, 0, "the test could not take the lock");
        assert!(
            open_read(&p).is_ok(),
            "read-only open blocked by another lock"
        );
        assert!(create(&p).is_ok(), "create blocked by another lock");
    }
}
