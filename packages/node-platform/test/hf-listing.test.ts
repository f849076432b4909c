import { describe, expect, test } from 'vitest'
import { parseHfListing } from '../src/hub/hf-listing.js'

const SHA = 'a'.repeat(40)
const FILE_SHA = 'b'.repeat(64)

describe('parseHfListing', () => {
  test('reads sizes, LFS sha256 and git blob ids', () => {
    const listing = parseHfListing(
      {
        sha: SHA,
        siblings: [
          { rfilename: 'config.json', size: 10, blobId: 'c'.repeat(40) },
          {
            rfilename: 'model.safetensors',
            size: 134,
            blobId: 'd'.repeat(40),
            lfs: { sha256: FILE_SHA, size: 9 },
          },
        ],
      },
      'hf:o/r',
      'u',
    )
    expect(listing.commit).toBe(SHA)
    expect(listing.files.get('config.json')).toEqual({ size: 10, sha256: undefined, gitOid: 'c'.repeat(40) })
    // The LFS size and hash are the content's; the blob id is the pointer's and is never used.
    expect(listing.files.get('model.safetensors')).toEqual({ size: 9, sha256: FILE_SHA, gitOid: undefined })
  })

  test.each([
    ['not an object', [1]],
    ['no sha', { siblings: [] }],
    ['a short sha', { sha: 'abc', siblings: [] }],
    ['a sha with a path in it', { sha: `${'a'.repeat(39)}/`, siblings: [] }],
    ['no siblings', { sha: SHA }],
    ['siblings not an array', { sha: SHA, siblings: {} }],
    ['a sibling without rfilename', { sha: SHA, siblings: [{ size: 1 }] }],
    [
      'an LFS file without sha256',
      { sha: SHA, siblings: [{ rfilename: 'm.safetensors', lfs: { size: 3 } }] },
    ],
    [
      'an LFS sha256 that is not hex',
      { sha: SHA, siblings: [{ rfilename: 'm', lfs: { sha256: 'x'.repeat(64) } }] },
    ],
  ])('%s is ERR_DOWNLOAD_RESPONSE', (_, body) => {
    expect(() => parseHfListing(body, 'hf:o/r', 'u')).toThrow(
      expect.objectContaining({ code: 'ERR_DOWNLOAD_RESPONSE' }),
    )
  })

  test('sizes that are not byte counts are dropped, not trusted', () => {
    const listing = parseHfListing(
      {
        sha: SHA,
        siblings: [
          { rfilename: 'a', size: -1 },
          { rfilename: 'b', size: 1.5 },
          { rfilename: 'c', size: '9' },
        ],
      },
      'hf:o/r',
      'u',
    )
    expect([...listing.files.values()].map((f) => f.size)).toEqual([undefined, undefined, undefined])
  })
})
