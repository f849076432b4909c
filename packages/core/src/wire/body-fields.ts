import { type BodyReader, type BodyWriter, payloadError, utf8Bytes } from './body.js'
import { FrameFlag } from './frame.js'
import { FP16_TAG, hiddenDtypeOfTag } from './hidden-dtype.js'
import { MAX_FINGERPRINT_BYTES, STEP_SIGNATURE_BYTES, type StepResult } from './validate-message.js'

// Field encodings the message bodies share (messages.ts): ids, the fp16 tag, hidden states, and a
// StepResult's optional section.

export const EXT_SIGNATURE = 1
export const EXT_FINGERPRINT = 2

export function readExtensions(r: BodyReader, m: StepResult): void {
  const parts = r.u8()
  const high = r.u8()
  const fingerprintLength = high * 0x10000 + r.u16()
  // The flag promises a section; an empty one, or a length with no fingerprint, would give one
  // message two encodings.
  if (parts === 0 || (parts & ~(EXT_SIGNATURE | EXT_FINGERPRINT)) !== 0) {
    throw payloadError(`StepResult extension header has unknown parts 0x${parts.toString(16)}`)
  }
  if ((parts & EXT_FINGERPRINT) === 0 ? fingerprintLength !== 0 : fingerprintLength === 0) {
    throw payloadError('StepResult fingerprint length does not match its presence bit')
  }
  if (fingerprintLength > MAX_FINGERPRINT_BYTES) {
    throw payloadError(
      `StepResult fingerprint of ${fingerprintLength} bytes is over ${MAX_FINGERPRINT_BYTES}`,
    )
  }
  if ((parts & EXT_SIGNATURE) !== 0) m.signature = r.bytes(STEP_SIGNATURE_BYTES)
  if ((parts & EXT_FINGERPRINT) !== 0) m.fingerprint = r.bytes(fingerprintLength)
}

/** Writes the fp16 tag when asked; returns the frame flags that announce it. */
export function writeTag(w: BodyWriter, fp16: boolean): number {
  if (!fp16) return 0
  w.u32(FP16_TAG)
  return FrameFlag.HiddenDtype
}

export function writeHidden(w: BodyWriter, hidden: Float32Array, fp16: boolean): void {
  if (fp16) w.fp16Array(hidden)
  else w.array(hidden)
}

/** Whether hidden states are fp16; an unknown tag is ERR_WIRE_DTYPE (and fp32 has no tag). */
export function readTag(r: BodyReader, flags: number): boolean {
  if ((flags & FrameFlag.HiddenDtype) === 0) return false
  return hiddenDtypeOfTag(r.u32()) === 'fp16'
}

export function writeId(w: BodyWriter, id: string): void {
  w.u8(id.length).bytes(utf8Bytes(id)).align4()
}

export function readId(r: BodyReader): string {
  const id = r.ascii(r.u8())
  r.align4()
  return id
}
