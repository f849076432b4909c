// Chromium flags that work headless on a bare Linux box, loopback only. Plain JavaScript so the
// benches (e2e/bench/*.mjs, run without a test runner) and the TypeScript suites share them.
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  // WebRTC between the page and Node workers on 127.0.0.1.
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  // A software (SwiftShader) WebGPU adapter where there is no GPU: slow, but correct.
  '--enable-unsafe-webgpu',
]
