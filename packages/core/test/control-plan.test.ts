import { describe, expect, test } from 'vitest'
import { ControlError } from '../src/errors.js'
import { parsePlanMessage, stagePeers } from '../src/mesh/control-protocol.js'

const valid = {
  version: 3,
  mesh: 'default',
  modelPath: '/models/default/',
  modelId: 'tiny',
  stages: [
    { start: 0, end: 2, peerId: 'kA', replicas: ['kB', 'kC'] },
    { start: 2, end: 4, peerId: 'kD' },
  ],
  excluded: ['kE'],
}

describe('parsePlanMessage with replicas and exclusions', () => {
  test('keeps replicas and excluded peers', () => {
    const plan = parsePlanMessage(valid)
    expect(plan.stages[0]?.replicas).toEqual(['kB', 'kC'])
    expect(plan.stages[1]?.replicas).toBeUndefined()
    expect(plan.excluded).toEqual(['kE'])
    expect(plan.stages.map(stagePeers)).toEqual([['kA', 'kB', 'kC'], ['kD']])
  })

  const bad: Array<[string, unknown]> = [
    ['replicas not an array', { ...valid, stages: [{ start: 0, end: 4, peerId: 'kA', replicas: 'kB' }] }],
    [
      'a replica id with a slash',
      { ...valid, stages: [{ start: 0, end: 4, peerId: 'kA', replicas: ['k/B'] }] },
    ],
    [
      'a peer twice in one stage',
      { ...valid, stages: [{ start: 0, end: 4, peerId: 'kA', replicas: ['kB', 'kA'] }] },
    ],
    [
      'too many replicas',
      {
        ...valid,
        stages: [{ start: 0, end: 4, peerId: 'kA', replicas: Array.from({ length: 17 }, (_, i) => `k${i}`) }],
      },
    ],
    ['excluded not an array', { ...valid, excluded: 'kE' }],
    ['an excluded id that is not a string', { ...valid, excluded: [42] }],
  ]
  test.each(bad)('refuses %s', (_, plan) => {
    let thrown: unknown
    try {
      parsePlanMessage(plan)
    } catch (err) {
      thrown = err
    }
    expect(thrown).toBeInstanceOf(ControlError)
    expect((thrown as ControlError).code).toBe('ERR_CONTROL_INPUT')
  })
})
