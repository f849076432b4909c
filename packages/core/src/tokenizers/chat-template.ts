import { Environment, Interpreter, Template as JinjaTemplate } from '@huggingface/jinja'
import { ChatTemplateError } from '../errors.js'

/**
 * The parts of @huggingface/jinja we use, typed narrowly: like @huggingface/tokenizers, its
 * .d.ts files import each other without extensions, which NodeNext resolution rejects. We
 * parse with `Template` but run the program ourselves: `Template.render` declares
 * `strftime_now` over the wall clock (so output would change daily) and an unbounded `range`,
 * and it refuses to let a caller replace either.
 */
interface ParsedTemplate {
  readonly parsed: unknown
}
interface JinjaEnvironment {
  set(name: string, value: unknown): unknown
}
const TemplateClass = JinjaTemplate as unknown as new (source: string) => ParsedTemplate
const EnvironmentClass = Environment as unknown as new () => JinjaEnvironment
const InterpreterClass = Interpreter as unknown as new (
  env: JinjaEnvironment,
) => { run(program: unknown): { value: unknown } }

/** The longest list `range()` may build inside a template. */
const MAX_RANGE = 65_536

/** One chat message as templates see it (`message.role`, `message.content`). */
export interface ChatTurn {
  readonly role: string
  readonly content: string
}

export interface ChatRenderOptions {
  /** Ends with the header of the assistant's turn (default true: we render to generate). */
  readonly addGenerationPrompt?: boolean
  /**
   * The date `strftime_now` reports (Llama 3.x prints "Today Date: ..."). Without one,
   * `strftime_now` is left undefined and such templates print their own built-in date, so the
   * rendering is deterministic unless the caller asks for a clock.
   */
  readonly date?: Date
  /** Qwen3's switch; passed only when set, so other templates see no such variable. */
  readonly enableThinking?: boolean
}

/** Bounds what a model directory or a request can make the renderer do. */
export const CHAT_TEMPLATE_LIMITS = {
  /** Real templates are 1.5-10 KB; the largest on the Hub are tens of KB. */
  sourceChars: 256 * 1024,
  renderedChars: 4 * 1024 * 1024,
  messages: 1024,
  messageChars: 1024 * 1024,
} as const

/** End-of-turn tokens of the template families we know; see endOfTurnTokens. */
const END_OF_TURN_TOKENS = ['<|eot_id|>', '<|eom_id|>', '<|im_end|>', '<end_of_turn>', '<|end|>']

/**
 * A model's Jinja chat template (Hugging Face's `chat_template`), rendered by
 * @huggingface/jinja with the variables transformers' apply_chat_template provides. Parsing is
 * lazy and remembered: a broken template does not stop a model from loading (raw completions
 * still work); every chat request against it fails with ChatTemplateError (ERR_CHAT_TEMPLATE).
 */
export class ChatTemplate {
  private parsed: ParsedTemplate | ChatTemplateError | undefined

  constructor(
    readonly source: string,
    /** The text of the BOS / EOS tokens, as `bos_token` / `eos_token` (empty when none). */
    readonly specials: {
      readonly bosToken?: string
      readonly eosToken?: string
      /** tokenizer_config.json's add_bos_token: false means the model wants no BOS added. */
      readonly addBosToken?: boolean
    } = {},
  ) {
    if (typeof source !== 'string') throw new ChatTemplateError('a chat template must be a string')
    if (source.length > CHAT_TEMPLATE_LIMITS.sourceChars) {
      throw new ChatTemplateError(
        `the chat template is ${source.length} characters; at most ${CHAT_TEMPLATE_LIMITS.sourceChars} are accepted`,
      )
    }
  }

  /**
   * The template of a model directory: `chat_template.jinja` when given (newer transformers
   * save it there, and it wins, as in transformers), else tokenizer_config.json's
   * `chat_template`: a string, or a list of `{name, template}` of which `default` is taken.
   * Undefined when the model has none (the caller's fallback applies).
   */
  static fromTokenizerConfig(tokenizerConfig: unknown, jinjaFile?: string): ChatTemplate | undefined {
    const config = isRecord(tokenizerConfig) ? tokenizerConfig : {}
    const specials = {
      ...optionalToken(config, 'bos_token'),
      ...optionalToken(config, 'eos_token'),
      ...(typeof config.add_bos_token === 'boolean' ? { addBosToken: config.add_bos_token } : {}),
    }
    if (jinjaFile !== undefined) return new ChatTemplate(jinjaFile, specials)
    const entry = config.chat_template
    if (entry === undefined || entry === null) return undefined
    if (typeof entry === 'string') return new ChatTemplate(entry, specials)
    if (Array.isArray(entry)) {
      for (const t of entry) {
        if (!isRecord(t) || typeof t.name !== 'string' || typeof t.template !== 'string') {
          throw new ChatTemplateError(
            'tokenizer_config.json chat_template list entries must be {"name": string, "template": string}',
          )
        }
      }
      const named = entry.find((t) => t.name === 'default')
      return named === undefined ? undefined : new ChatTemplate(named.template as string, specials)
    }
    throw new ChatTemplateError('tokenizer_config.json chat_template must be a string or a list of templates')
  }

  /** Renders the messages; throws ChatTemplateError on any failure, with the template's reason. */
  render(messages: readonly ChatTurn[], options: ChatRenderOptions = {}): string {
    if (messages.length > CHAT_TEMPLATE_LIMITS.messages) {
      throw new ChatTemplateError(`at most ${CHAT_TEMPLATE_LIMITS.messages} messages can be rendered`)
    }
    for (const m of messages) {
      if (typeof m.role !== 'string' || typeof m.content !== 'string') {
        throw new ChatTemplateError('each message needs a string role and content')
      }
      if (m.content.length > CHAT_TEMPLATE_LIMITS.messageChars) {
        throw new ChatTemplateError(`a message exceeds ${CHAT_TEMPLATE_LIMITS.messageChars} characters`)
      }
    }
    const template = this.template()
    const date = options.date
    const env = new EnvironmentClass()
    const globals: Record<string, unknown> = {
      // What Template.render's setupGlobals declares, with our raise_exception and range.
      true: true,
      false: false,
      none: null,
      True: true,
      False: false,
      None: null,
      range: boundedRange,
      raise_exception: (message: unknown) => {
        throw new ChatTemplateError(`the chat template refused the messages: ${String(message)}`)
      },
      ...(date === undefined ? {} : { strftime_now: (format: unknown) => strftime(date, String(format)) }),
      // Fresh copies: a template's `set` must not reach the caller's objects.
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: options.addGenerationPrompt ?? true,
      bos_token: this.specials.bosToken ?? '',
      eos_token: this.specials.eosToken ?? '',
      ...(options.enableThinking === undefined ? {} : { enable_thinking: options.enableThinking }),
    }
    let text: unknown
    try {
      for (const [name, value] of Object.entries(globals)) env.set(name, value)
      text = new InterpreterClass(env).run(template.parsed).value
    } catch (err) {
      if (err instanceof ChatTemplateError) throw err
      throw new ChatTemplateError(`the chat template failed to render: ${messageOf(err)}`, { cause: err })
    }
    if (typeof text !== 'string' || text.length > CHAT_TEMPLATE_LIMITS.renderedChars) {
      throw new ChatTemplateError(
        `the rendered chat exceeds ${CHAT_TEMPLATE_LIMITS.renderedChars} characters`,
      )
    }
    return text
  }

  /**
   * The end-of-turn tokens this template writes (`<|eot_id|>`, `<|im_end|>`, `<end_of_turn>`,
   * ...): the model ends its reply with one, so generation must stop there even when
   * config.json's eos_token_id names another token.
   */
  endOfTurnTokens(): string[] {
    const found = END_OF_TURN_TOKENS.filter((t) => this.source.includes(t))
    const eos = this.specials.eosToken
    if (eos !== undefined && eos !== '' && !found.includes(eos)) found.push(eos)
    return found
  }

  private template(): ParsedTemplate {
    if (this.parsed === undefined) {
      try {
        this.parsed = new TemplateClass(this.source)
      } catch (err) {
        this.parsed = new ChatTemplateError(`the chat template does not parse: ${messageOf(err)}`, {
          cause: err,
        })
      }
    }
    if (this.parsed instanceof ChatTemplateError) throw this.parsed
    return this.parsed
  }
}

/**
 * Prompt ids of a rendered chat with one BOS at most: templates such as Llama 3's and Gemma's
 * write `bos_token` themselves, and the tokenizer turns that text into the BOS id; adding
 * another (as a raw completion does) would double it, which degrades those models. Otherwise
 * the tokenizer's BOS is prepended, unless `addBos` is false (tokenizer_config.json's
 * `add_bos_token: false`, see ChatTemplate.specials).
 */
export function encodeChatPrompt(
  tokenizer: {
    readonly bosTokenId: number | undefined
    encode(text: string, options?: { addBos?: boolean }): number[]
  },
  rendered: string,
  options: { readonly addBos?: boolean } = {},
): number[] {
  const ids = tokenizer.encode(rendered, { addBos: false })
  const bos = tokenizer.bosTokenId
  if (bos === undefined || options.addBos === false || ids[0] === bos) return ids
  return [bos, ...ids]
}

/** Python's range(), refusing lists longer than MAX_RANGE (a template must not exhaust memory). */
function boundedRange(start: number, stop?: number, step = 1): number[] {
  const [from, to] = stop === undefined ? [0, start] : [start, stop]
  if (![from, to, step].every(Number.isInteger) || step === 0) {
    throw new ChatTemplateError('range() takes integers and a non-zero step')
  }
  const length = Math.max(0, Math.ceil((to - from) / step))
  if (length > MAX_RANGE) throw new ChatTemplateError(`range() of ${length} items exceeds ${MAX_RANGE}`)
  return Array.from({ length }, (_, i) => from + i * step)
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const MONTH_NAMES = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
]
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday']

/** Python's strftime for the directives chat templates use, in UTC (so tests are stable). */
export function strftime(date: Date, format: string): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0')
  return format.replace(/%([a-zA-Z%])/g, (whole, d: string) => {
    switch (d) {
      case 'd':
        return pad(date.getUTCDate())
      case 'm':
        return pad(date.getUTCMonth() + 1)
      case 'b':
        return MONTHS[date.getUTCMonth()] as string
      case 'B':
        return MONTH_NAMES[date.getUTCMonth()] as string
      case 'Y':
        return String(date.getUTCFullYear())
      case 'y':
        return pad(date.getUTCFullYear() % 100)
      case 'a':
        return (DAYS[date.getUTCDay()] as string).slice(0, 3)
      case 'A':
        return DAYS[date.getUTCDay()] as string
      case 'H':
        return pad(date.getUTCHours())
      case 'M':
        return pad(date.getUTCMinutes())
      case 'S':
        return pad(date.getUTCSeconds())
      case '%':
        return '%'
      default:
        return whole
    }
  })
}

function optionalToken(
  config: Record<string, unknown>,
  key: 'bos_token' | 'eos_token',
): Record<string, string> {
  const entry = config[key]
  const content = isRecord(entry) ? entry.content : entry
  if (typeof content !== 'string') return {}
  return { [key === 'bos_token' ? 'bosToken' : 'eosToken']: content }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
