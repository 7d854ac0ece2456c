//! [`Task::all`] and [`Task::any`]: one task standing for many, resolved by done-callbacks on its
//! inputs, so no thread waits for them.

use std::sync::{Arc, Mutex};

use super::Task;

impl<T, E> Task<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// A task that finishes with every input's value, in input order, once all have succeeded.
    ///
    /// It fails as soon as one input fails, with that input's error, and is cancelled as soon as
    /// one input is cancelled (the other inputs go on: cancel them yourself if you want). With
    /// no inputs it succeeds at once with an empty `Vec`. Cancelling it affects no input. No
    /// thread blocks while it waits.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{Task, ThreadPool};
    ///
    /// let pool = ThreadPool::new(2);
    /// let parts: Vec<_> = (1..=3u32).map(|n| pool.submit(move || n * 10)).collect();
    /// let all = Task::all(&parts);
    /// assert_eq!(all.result(), Ok(vec![10, 20, 30]));
    /// ```
    pub fn all<'a, I>(tasks: I) -> Task<Vec<T>, E>
    where
        I: IntoIterator<Item = &'a Task<T, E>>,
    {
        let tasks: Vec<Task<T, E>> = tasks.into_iter().cloned().collect();
        let combined = Task::<Vec<T>, E>::pending();
        if tasks.is_empty() {
            combined.resolve(Ok(Vec::new()));
            return combined;
        }
        let slots = Arc::new(Mutex::new(Slots {
            values: vec![None; tasks.len()],
            remaining: tasks.len(),
        }));
        for (index, task) in tasks.iter().enumerate() {
            let (combined, slots) = (combined.clone(), Arc::clone(&slots));
            task.add_done_callback(move |task| match task.try_result() {
                Some(Ok(value)) => {
                    let values = {
                        let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
                        slots.values[index] = Some(value);
                        slots.remaining -= 1;
                        (slots.remaining == 0).then(|| std::mem::take(&mut slots.values))
                    };
                    if let Some(values) = values {
                        let values = values
                            .into_iter()
                            .map(|v| v.expect("every input succeeded"));
                        combined.resolve(Ok(values.collect()));
                    }
                }
                _ if task.is_cancelled() => {
                    combined.cancel();
                }
                Some(Err(error)) => {
                    combined.resolve(Err(error));
                }
                None => unreachable!("a done-callback sees its task done"),
            });
        }
        combined
    }

    /// A task that finishes with the value of the first input to succeed.
    ///
    /// Inputs that fail or are cancelled are skipped; if every input fails or is cancelled, it
    /// ends like the last of them to end (with its error, or cancelled). With no inputs it is
    /// cancelled at once (nothing can succeed). The inputs still running go on when it finishes;
    /// cancelling it affects no input. No thread blocks while it waits.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futurepool::{Task, ThreadPool};
    ///
    /// let pool = ThreadPool::new(2);
    /// let broken = pool.submit_fallible(|| Err::<&str, _>("mirror down"));
    /// let slow = pool.submit_fallible(|| {
    ///     std::thread::sleep(Duration::from_millis(20));
    ///     Ok("slow mirror")
    /// });
    /// assert_eq!(Task::any(&[broken, slow]).result(), Ok("slow mirror"));
    /// ```
    pub fn any<'a, I>(tasks: I) -> Task<T, E>
    where
        I: IntoIterator<Item = &'a Task<T, E>>,
    {
        let tasks: Vec<Task<T, E>> = tasks.into_iter().cloned().collect();
        let first = Task::<T, E>::pending();
        if tasks.is_empty() {
            first.cancel();
            return first;
        }
        let remaining = Arc::new(Mutex::new(tasks.len()));
        for task in &tasks {
            let (first, remaining) = (first.clone(), Arc::clone(&remaining));
            task.add_done_callback(move |task| {
                let outcome = task
                    .try_result()
                    .expect("a done-callback sees its task done");
                let last = {
                    let mut remaining = remaining.lock().unwrap_or_else(|e| e.into_inner());
                    *remaining -= 1;
                    *remaining == 0
                };
                match outcome {
                    Ok(value) => {
                        first.resolve(Ok(value));
                    }
                    Err(_) if last && task.is_cancelled() => {
                        first.cancel();
                    }
                    Err(error) if last => {
                        first.resolve(Err(error));
                    }
                    Err(_) => {}
                }
            });
        }
        first
    }
}

/// The values of [`Task::all`]'s inputs as they arrive.
struct Slots<T> {
    values: Vec<Option<T>>,
    remaining: usize,
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::error::TaskError;

    #[test]
    fn all_fails_with_the_first_failure_and_any_skips_it() {
        let (a, b) = (Task::<u8, &str>::pending(), Task::<u8, &str>::pending());
        let all = Task::all([&a, &b]);
        let any = Task::any([&a, &b]);
        assert!(a.resolve(Err(TaskError::Failed("a broke"))));
        assert_eq!(all.try_result(), Some(Err(TaskError::Failed("a broke"))));
        assert!(!any.is_done(), "one input can still succeed");
        assert!(b.resolve(Ok(2)));
        assert_eq!(any.try_result(), Some(Ok(2)));
    }

    #[test]
    fn cancellation_propagates_to_all_and_to_an_any_with_nothing_left() {
        let (a, b) = (Task::<u8>::pending(), Task::<u8>::pending());
        let all = Task::all([&a, &b]);
        let any = Task::any([&a, &b]);
        assert!(a.cancel());
        assert!(all.is_cancelled());
        assert!(!any.is_done());
        assert!(b.cancel());
        assert!(any.is_cancelled());
    }

    #[test]
    fn any_ends_like_its_last_input_when_all_fail() {
        let (a, b) = (Task::<u8, &str>::pending(), Task::<u8, &str>::pending());
        let any = Task::any([&a, &b]);
        a.cancel();
        b.resolve(Err(TaskError::Failed("b broke")));
        assert_eq!(any.try_result(), Some(Err(TaskError::Failed("b broke"))));
    }

    #[test]
    fn empty_inputs_end_at_once() {
        assert_eq!(Task::<u8>::all([]).try_result(), Some(Ok(vec![])));
        assert!(Task::<u8>::any([]).is_cancelled());
    }

    #[test]
    fn all_keeps_input_order_whatever_the_completion_order() {
        let tasks: Vec<_> = (0..4).map(|_| Task::<usize>::pending()).collect();
        let all = Task::all(&tasks);
        for i in [2, 0, 3, 1] {
            tasks[i].resolve(Ok(i * 10));
        }
        assert_eq!(all.try_result(), Some(Ok(vec![0, 10, 20, 30])));
    }

    #[test]
    fn cancelling_the_combined_task_leaves_the_inputs_alone() {
        let a = Task::<u8>::pending();
        let all = Task::all([&a]);
        assert!(all.cancel());
        assert!(!a.is_done());
        assert!(a.resolve(Ok(1)));
        assert!(all.is_cancelled());
    }
}
