import { ButterflyError } from '../errors.js'
import type { ModelConfig } from '../model/model-config.js'
import type { StageIo } from '../onnx/stage-io.js'
import type { StageStepInput } from './inference-backend.js'

/** Rejects a step that does not fit this stage before it reaches the runtime. */
export function validateStepInput(config: ModelConfig, io: StageIo, input: StageStepInput): void {
  const bad = (msg: string) => new ButterflyError('ERR_STEP_INPUT', msg)
  const { seqLen: S, startPos } = input
  if (!Number.isInteger(S) || S < 1) throw bad(`seqLen must be a positive integer, got ${S}`)
  if (!Number.isInteger(startPos) || startPos < 0) throw bad(`startPos must be a non-negative integer`)
  if (io.isFirst) {
    const tokens = input.tokens
    if (tokens === undefined || tokens.length !== S) throw bad(`first stage needs ${S} token ids`)
    for (const t of tokens) {
      if (!Number.isInteger(t) || t < 0 || t >= config.vocabSize) {
        throw bad(`token id ${t} is outside the vocabulary of ${config.vocabSize}`)
      }
    }
  } else {
    const hidden = input.hidden
    if (hidden === undefined || hidden.length !== S * config.hiddenSize) {
      throw bad(`stage needs hidden states of ${S} x ${config.hiddenSize} floats`)
    }
  }
  if (input.allRows !== undefined && !(typeof input.allRows === 'boolean' && (io.isLast || !input.allRows))) {
    throw bad('allRows is a boolean, and only the last stage computes per-position candidates')
  }
  if (input.candidates !== undefined && !(Number.isInteger(input.candidates) && input.candidates >= 1)) {
    throw bad('candidates must be a positive integer')
  }
  if (io.isLast && input.temperature !== undefined) {
    if (!Number.isFinite(input.temperature) || input.temperature < 0) throw bad('temperature must be ≥ 0')
  }
}
