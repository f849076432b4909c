import { TransportError } from '../errors.js'
import type { SignalData } from './transport.js'

/** Same cap as the signal server applies (LIMITS.signalBytes in mesh/control-protocol.ts). */
export const MAX_SIGNAL_BYTES = 64 * 1024

export const SIGNAL_TYPES = ['offer', 'answer', 'candidate', 'renegotiate', 'transceiverRequest'] as const
export type SignalType = (typeof SIGNAL_TYPES)[number]

/**
 * Checks a signaling payload from another peer and rebuilds it from the fields simple-peer
 * reads, so nothing else the sender put in it reaches the WebRTC stack. simple-peer acts on
 * fields, not on `type`: `{type: 'candidate', sdp}` would otherwise set a remote description.
 */
export function parseSignal(data: unknown): SignalData & { readonly type: SignalType } {
  if (typeof data !== 'object' || data === null || Array.isArray(data))
    throw invalid('signal data must be an object')
  let size: number
  try {
    size = JSON.stringify(data).length
  } catch (cause) {
    throw invalid('signal data is not JSON', cause)
  }
  if (size > MAX_SIGNAL_BYTES) throw invalid(`signal data is ${size} characters, over ${MAX_SIGNAL_BYTES}`)
  const d = data as Record<string, unknown>
  switch (d.type) {
    case 'offer':
    case 'answer':
      if (typeof d.sdp !== 'string' || d.sdp.length === 0)
        throw invalid(`${d.type} needs a non-empty sdp string`)
      return { type: d.type, sdp: d.sdp }
    case 'candidate': {
      const c = d.candidate
      if (typeof c !== 'object' || c === null) throw invalid('candidate signal needs a candidate object')
      const { candidate, sdpMid, sdpMLineIndex } = c as Record<string, unknown>
      if (typeof candidate !== 'string') throw invalid('candidate.candidate must be a string')
      if (!(sdpMid === undefined || sdpMid === null || (typeof sdpMid === 'string' && sdpMid.length <= 64))) {
        throw invalid('candidate.sdpMid must be a short string or null')
      }
      const validIndex =
        typeof sdpMLineIndex === 'number' && Number.isInteger(sdpMLineIndex) && sdpMLineIndex >= 0
      if (!(sdpMLineIndex === undefined || sdpMLineIndex === null || validIndex)) {
        throw invalid('candidate.sdpMLineIndex must be an integer >= 0 or null')
      }
      return {
        type: 'candidate',
        candidate: { candidate, sdpMid: sdpMid ?? null, sdpMLineIndex: sdpMLineIndex ?? null },
      }
    }
    case 'renegotiate':
      if (d.renegotiate !== true) throw invalid('renegotiate signal needs renegotiate: true')
      return { type: 'renegotiate', renegotiate: true }
    case 'transceiverRequest': {
      const r = d.transceiverRequest
      if (typeof r !== 'object' || r === null)
        throw invalid('transceiverRequest signal needs a transceiverRequest object')
      const { kind } = r as Record<string, unknown>
      if (kind !== 'audio' && kind !== 'video')
        throw invalid('transceiverRequest.kind must be audio or video')
      return { type: 'transceiverRequest', transceiverRequest: { kind } }
    }
    default: {
      const shown = typeof d.type === 'string' ? JSON.stringify(d.type.slice(0, 32)) : typeof d.type
      throw invalid(`unknown signal type ${shown}`)
    }
  }
}

function invalid(message: string, cause?: unknown): TransportError {
  return new TransportError('ERR_SIGNAL_INVALID', message, cause === undefined ? undefined : { cause })
}
