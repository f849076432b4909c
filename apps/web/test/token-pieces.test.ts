import { describe, expect, test } from 'vitest'
import { type Piece, PieceCollector, samplingFields, type TokenProvenance } from '../src/api/token-pieces.js'

const token = (peer: string): TokenProvenance => ({
  stages: [{ peers: [peer], agreeing: [], disagreeing: [], spotChecked: false }],
})

describe('PieceCollector', () => {
  test("tokens on a chunk without text (the chat's role chunk, a split character) wait for the next text", () => {
    const pieces: Piece[] = []
    const c = new PieceCollector((p) => pieces.push(p))
    c.add('', [token('a')]) // the opening role chunk carries the first token
    c.add('Hel', undefined)
    c.add(undefined, [token('b')]) // a token ending inside a multi-byte character
    c.add('lo', [token('c')])
    expect(pieces).toEqual([
      { text: 'Hel', tokens: [token('a')] },
      { text: 'lo', tokens: [token('b'), token('c')] },
    ])
    expect(c.leftover()).toEqual([])
  })

  test('tokens after the last text are left over, and non-arrays are ignored', () => {
    const pieces: Piece[] = []
    const c = new PieceCollector((p) => pieces.push(p))
    c.add('x', 'not an array')
    c.add('', [token('z')])
    expect(pieces).toEqual([{ text: 'x', tokens: [] }])
    expect(c.leftover()).toEqual([token('z')])
  })
})

describe('samplingFields', () => {
  test('the seed is sent only when set', () => {
    expect(samplingFields({ maxTokens: 8, temperature: 0, topP: 1, seed: undefined })).toEqual({
      max_tokens: 8,
      temperature: 0,
      top_p: 1,
    })
    expect(samplingFields({ maxTokens: 8, temperature: 0.5, topP: 0.9, seed: 7 })).toEqual({
      max_tokens: 8,
      temperature: 0.5,
      top_p: 0.9,
      seed: 7,
    })
  })
})
