//! The ways a task can fail to produce its value, as one enum a caller can match on.

use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why a [`Task`](crate::Task) has no value.
///
/// `E` is the task's own error type: a closure submitted with
/// [`ThreadPool::submit_fallible`](crate::ThreadPool::submit_fallible) that returns `Err(e)` ends as
/// [`TaskError::Failed(e)`](TaskError::Failed). Tasks that cannot fail on their own use the default,
/// [`Infallible`], so that variant cannot occur.
///
/// Every variant is small (payloads live behind one pointer) so a task's slot stays compact, and
/// every value is independent: cloning an error never shares mutable state between handles (a pain
/// of Python's pools, which raise one exception object from many futures).
///
/// # Examples
///
/// ```
/// use futurepool::{TaskError, ThreadPool};
///
/// let pool = ThreadPool::new(2);
/// let task = pool.submit_fallible(|| "42x".parse::<u32>());
/// match task.result() {
///     Ok(n) => println!("parsed {n}"),
///     Err(TaskError::Failed(e)) => println!("bad number: {e}"),
///     Err(TaskError::Panicked(panic)) => println!("bug: {panic}"),
///     Err(other) => println!("not run: {other}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError<E = Infallible> {
    /// The task was cancelled before it started: by [`Task::cancel`](crate::Task::cancel), a shutdown
    /// that cancelled pending work, or a dropped or expired `map`; or it was stopped while it ran
    /// by [`Task::abort`](crate::Task::abort) (its value, if any, discarded).
    #[error("the task was cancelled (before it started, or aborted while it ran)")]
    Cancelled,
    /// The task panicked; the panic was caught and the worker lives on.
    #[error("the task panicked: {0}")]
    Panicked(Panic),
    /// The task ran and returned its own error.
    #[error("the task failed: {0}")]
    Failed(E),
    /// Waiting for the task timed out. The task itself is unaffected and may still finish; wait
    /// again to get its outcome.
    #[error("timed out waiting for the task (it is still queued or running)")]
    Timeout,
    /// The task ran longer than its time limit and was stopped (its worker process was killed).
    #[error("the task exceeded its time limit of {0:?} and was stopped")]
    TimeLimit(Duration),
    /// The task's worker process used more memory than the pool's
    /// [`memory_limit`](crate::ProcessPoolBuilder::memory_limit) while running it, and was killed
    /// at once (and replaced); only this task fails. Both figures are bytes of resident memory.
    #[error(
        "the task's worker used {used} bytes of memory, over the pool's memory limit of {limit} \
         bytes, and was killed; lower the task's memory use or raise `memory_limit`"
    )]
    MemoryLimit {
        /// The pool's limit.
        limit: u64,
        /// What the worker was found using.
        used: u64,
    },
    /// The worker running the task was lost before it could report a result.
    #[error("the worker running the task was lost: {0}")]
    WorkerLost(WorkerLoss),
    /// The pool cannot run tasks (for example a worker initializer failed).
    #[error("the pool is broken: {0}")]
    PoolBroken(Reason),
    /// The task was submitted after the pool was shut down, so it never ran.
    #[error("the pool is shut down and accepts no new tasks")]
    ShutDown,
    /// The task's arguments or result could not cross to or from its worker (serialization failed,
    /// the function is not registered there, or the payload is too large).
    #[error("the task's data could not be transferred: {0}")]
    Transfer(Reason),
}

impl<E> TaskError<E> {
    /// True if the task was cancelled before it started.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::TaskError;
    /// assert!(TaskError::<()>::Cancelled.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }

    /// True if the task panicked.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::ThreadPool;
    /// let pool = ThreadPool::new(1);
    /// # std::panic::set_hook(Box::new(|_| {}));
    /// let task = pool.submit(|| -> u8 { panic!("boom") });
    /// assert!(task.result().unwrap_err().is_panic());
    /// ```
    pub fn is_panic(&self) -> bool {
        matches!(self, TaskError::Panicked(_))
    }

    /// True if waiting for the task timed out (the task itself goes on).
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::TaskError;
    /// assert!(TaskError::<()>::Timeout.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, TaskError::Timeout)
    }

    /// True if the task itself ran and failed: it panicked or returned its own error. This is what
    /// [`ReturnWhen::FirstException`](crate::ReturnWhen::FirstException) looks for; cancellation and
    /// waiting time-outs do not count.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::TaskError;
    /// assert!(TaskError::Failed("bad input").is_failure());
    /// assert!(!TaskError::<&str>::Cancelled.is_failure());
    /// ```
    pub fn is_failure(&self) -> bool {
        !matches!(self, TaskError::Cancelled | TaskError::Timeout)
    }

    /// The task's own error, if that is why it failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::TaskError;
    /// assert_eq!(TaskError::Failed(7).into_failed(), Some(7));
    /// assert_eq!(TaskError::<i32>::Cancelled.into_failed(), None);
    /// ```
    pub fn into_failed(self) -> Option<E> {
        match self {
            TaskError::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Converts the task's own error type, leaving every other variant as it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::TaskError;
    /// let e: TaskError<String> = TaskError::Failed(3).map_failed(|n| format!("code {n}"));
    /// assert_eq!(e, TaskError::Failed("code 3".to_string()));
    /// ```
    pub fn map_failed<F>(self, f: impl FnOnce(E) -> F) -> TaskError<F> {
        match self {
            TaskError::Cancelled => TaskError::Cancelled,
            TaskError::Panicked(p) => TaskError::Panicked(p),
            TaskError::Failed(e) => TaskError::Failed(f(e)),
            TaskError::Timeout => TaskError::Timeout,
            TaskError::TimeLimit(d) => TaskError::TimeLimit(d),
            TaskError::MemoryLimit { limit, used } => TaskError::MemoryLimit { limit, used },
            TaskError::WorkerLost(w) => TaskError::WorkerLost(w),
            TaskError::PoolBroken(r) => TaskError::PoolBroken(r),
            TaskError::ShutDown => TaskError::ShutDown,
            TaskError::Transfer(r) => TaskError::Transfer(r),
        }
    }
}

impl TaskError<Infallible> {
    /// Widens an error of an infallible task to any task error type.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::TaskError;
    /// let e: TaskError<std::io::Error> = TaskError::Cancelled.widen();
    /// assert!(e.is_cancelled());
    /// ```
    pub fn widen<E>(self) -> TaskError<E> {
        self.map_failed(|never| match never {})
    }
}

/// A caught panic: its message and, when known, where it happened.
///
/// # Examples
///
/// ```
/// use futurepool::{TaskError, ThreadPool};
/// # std::panic::set_hook(Box::new(|_| {}));
/// let pool = ThreadPool::new(1);
/// let err = pool.submit(|| -> () { panic!("disk on fire") }).result().unwrap_err();
/// if let TaskError::Panicked(panic) = err {
///     assert_eq!(panic.message(), "disk on fire");
/// }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Panic(Arc<PanicDetails>);

#[derive(PartialEq, Eq)]
struct PanicDetails {
    message: String,
    location: Option<String>,
    /// Why `location` is `None`, when futurepool knows (see [`Panic::location`]).
    missing_location: Option<&'static str>,
}

impl Panic {
    /// A panic with this message and location (`file:line:column`).
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::Panic;
    /// let p = Panic::new("oops", Some("src/main.rs:3:5".into()));
    /// assert_eq!(p.to_string(), "oops (at src/main.rs:3:5)");
    /// ```
    pub fn new(message: impl Into<String>, location: Option<String>) -> Self {
        Panic(Arc::new(PanicDetails {
            message: message.into(),
            location,
            missing_location: None,
        }))
    }

    /// This panic, noting why its location is unknown; `Display` shows it.
    pub(crate) fn with_missing_location(self, why: &'static str) -> Self {
        Panic(Arc::new(PanicDetails {
            message: self.0.message.clone(),
            location: None,
            missing_location: Some(why),
        }))
    }

    /// Builds a `Panic` from the payload `catch_unwind` returned: `&str` and `String` payloads keep
    /// their text, anything else becomes a placeholder.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::Panic;
    /// # std::panic::set_hook(Box::new(|_| {}));
    /// let payload = std::panic::catch_unwind(|| panic!("number {}", 7)).unwrap_err();
    /// assert_eq!(Panic::from_payload(payload.as_ref(), None).message(), "number 7");
    /// ```
    pub fn from_payload(payload: &(dyn Any + Send), location: Option<String>) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "<panic payload that is not a string>".to_string()
        };
        Panic::new(message, location)
    }

    /// The panic message.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(futurepool::Panic::new("oops", None).message(), "oops");
    /// ```
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Where the panic happened, as `file:line:column`, when it was recorded.
    ///
    /// futurepool learns a location from a panic hook it installs in front of the program's. It
    /// is `None` only when no hook of futurepool's saw the panic: the program replaced the panic
    /// hook while the task ran (later tasks have their location again), the panic was raised with
    /// `std::panic::resume_unwind` (which runs no hook), or the program installed a hook that
    /// does not call the one it replaced. The panic's `Display` then says which. A program that
    /// sets its own hook keeps every location by chaining the previous one:
    ///
    /// ```
    /// let previous = std::panic::take_hook();
    /// std::panic::set_hook(Box::new(move |info| {
    ///     // ... your own reporting ...
    ///     previous(info); // futurepool's hook (if installed) records the location here
    /// }));
    /// ```
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(futurepool::Panic::new("oops", None).location(), None);
    /// ```
    pub fn location(&self) -> Option<&str> {
        self.0.location.as_deref()
    }
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)?;
        if let Some(location) = &self.0.location {
            write!(f, " (at {location})")?;
        } else if let Some(why) = self.0.missing_location {
            write!(f, " (location unknown: {why})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Panic")
            .field("message", &self.0.message)
            .field("location", &self.0.location)
            .field("missing_location", &self.0.missing_location)
            .finish()
    }
}

/// How the worker that held a task was lost.
///
/// # Examples
///
/// ```
/// use futurepool::WorkerLoss;
/// assert_eq!(WorkerLoss::Signaled(9).to_string(), "worker process killed by signal 9 (SIGKILL)");
/// assert_eq!(WorkerLoss::Exited(3).to_string(), "worker process exited with code 3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerLoss {
    /// The worker process exited with this code while holding the task.
    Exited(i32),
    /// The worker process was killed by this signal while holding the task.
    Signaled(i32),
    /// The connection to the worker broke without an exit status (for example a remote worker).
    Disconnected,
    /// A cluster task was handed to this many workers and each was lost; it was dead-lettered.
    GaveUp {
        /// How many times the task was delivered.
        deliveries: u32,
    },
}

impl fmt::Display for WorkerLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WorkerLoss::Exited(code) => write!(f, "worker process exited with code {code}"),
            WorkerLoss::Signaled(signal) => match signal_name(signal) {
                Some(name) => write!(f, "worker process killed by signal {signal} ({name})"),
                None => write!(f, "worker process killed by signal {signal}"),
            },
            WorkerLoss::Disconnected => f.write_str("lost the connection to the worker"),
            WorkerLoss::GaveUp { deliveries } => write!(
                f,
                "the task was delivered {deliveries} times and every worker running it was lost"
            ),
        }
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// A human-readable reason, shared cheaply between the tasks that fail for it.
///
/// # Examples
///
/// ```
/// let r = futurepool::Reason::new("initializer failed: no config");
/// assert_eq!(r.to_string(), "initializer failed: no config");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Reason(Arc<String>);

impl Reason {
    /// A reason with this text.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(futurepool::Reason::new("x").as_str(), "x");
    /// ```
    pub fn new(text: impl Into<String>) -> Self {
        Reason(Arc::new(text.into()))
    }

    /// The reason's text.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(futurepool::Reason::new("why").as_str(), "why");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}
