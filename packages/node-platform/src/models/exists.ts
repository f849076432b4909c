import { stat } from 'node:fs/promises'

/** Whether anything (file, directory, link target) is at `path`; any stat failure counts as no. */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}
