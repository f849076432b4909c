/**
 * Runs a callback supplied from above a transport. A throwing handler is a bug up there: it is
 * re-thrown on a fresh task so it surfaces, without breaking delivery to the other handlers or
 * the channel's own callback.
 */
export function guard(fn: () => void): void {
  try {
    fn()
  } catch (err) {
    setTimeout(() => {
      throw err
    }, 0)
  }
}
