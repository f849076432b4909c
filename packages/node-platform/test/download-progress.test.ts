import { PassThrough } from 'node:stream'
import { describe, expect, test } from 'vitest'
import { terminalProgress } from '../src/hub/download-progress.js'

describe('terminalProgress', () => {
  test('no bar when stderr is not a terminal', () => {
    const stream = Object.assign(new PassThrough(), { isTTY: false }) as unknown as NodeJS.WriteStream
    expect(terminalProgress(stream)).toBeUndefined()
  })

  test('a byte bar on a terminal', () => {
    let out = ''
    const pass = new PassThrough()
    pass.on('data', (d) => (out += d))
    const stream = Object.assign(pass, { isTTY: true, columns: 120 }) as unknown as NodeJS.WriteStream
    const bar = terminalProgress(stream)
    expect(bar).toBeDefined()
    bar?.start(2048)
    bar?.advance(1024)
    bar?.advance(1024)
    bar?.stop()
    expect(out).toContain('downloading weights')
    expect(out).toContain('100%')
    expect(out).toContain('2KB/2KB')
  })
})
