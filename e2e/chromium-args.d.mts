/** Flags that work headless on a bare Linux box, loopback only. */
export declare const CHROMIUM_ARGS: readonly string[]
