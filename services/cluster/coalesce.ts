// Single-flight with one re-run: for work that must reflect the latest state
// (re-read the election, republish the membership entry) but never overlap.

/**
 * Wraps `task` so runs never overlap: a call while a run is under way asks
 * for one more run after it (many such calls still make one). The promise
 * settles when a run that started after the call has finished. Never
 * rejects: a failed run goes to `onError`.
 */
export function coalesced(task: () => Promise<void>, onError: (e: unknown) => void): () => Promise<void> {
  let running: Promise<void> | null = null;
  let again = false;
  return () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        try {
          await task();
        } catch (e) {
          onError(e);
        }
      } while (again);
    })().finally(() => {
      running = null;
    });
    return running;
  };
}
