import { describe, expect, test } from 'vitest'
import {
  ButterflyError,
  CHAT_TEMPLATE_LIMITS,
  ChatTemplate,
  ChatTemplateError,
  encodeChatPrompt,
  generationConfigEosIds,
  stopTokenIdsOf,
  strftime,
} from '../src/index.js'
import { realTokenizer } from './real-tokenizer-fixtures.js'

// The four real templates rendered by @huggingface/jinja. Expected strings are what
// transformers' apply_chat_template prints for these templates (the layouts are documented
// on each model card); checked once by reading the rendered text, then written literally.
const DATE = new Date(Date.UTC(2025, 0, 15))
const SYSTEM = { role: 'system', content: 'You are terse.' }
const MULTI = [
  SYSTEM,
  { role: 'user', content: 'Hi!' },
  { role: 'assistant', content: 'Hello.' },
  { role: 'user', content: 'Bye?' },
]

describe('real chat templates', () => {
  test('Llama 3.2: BOS, the system header with the caller-given date, headers per turn', () => {
    const { template } = realTokenizer('llama3_2')
    expect(template.render(MULTI, { date: DATE })).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n' +
        'Cutting Knowledge Date: December 2023\nToday Date: 15 Jan 2025\n\nYou are terse.<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>' +
        '<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nBye?<|eot_id|>' +
        '<|start_header_id|>assistant<|end_header_id|>\n\n',
    )
    // Without a date the template's own default applies: deterministic, never the wall clock.
    expect(template.render([{ role: 'user', content: 'x' }])).toContain('Today Date: 26 Jul 2024\n')
  })

  test('Qwen3: im_start turns, enable_thinking=false writes the empty think block', () => {
    const { template } = realTokenizer('qwen3')
    const head =
      '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n' +
      '<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye?<|im_end|>\n<|im_start|>assistant\n'
    expect(template.render(MULTI, { enableThinking: false })).toBe(`${head}<think>\n\n</think>\n\n`)
    expect(template.render(MULTI)).toBe(head)
  })

  test('Qwen2.5: its default system prompt when none is given', () => {
    const { template } = realTokenizer('qwen2_5')
    expect(template.render([{ role: 'user', content: 'Hi!' }])).toBe(
      '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' +
        '<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n',
    )
  })

  test('Gemma 3 folds the system message into the first user turn and calls the assistant "model"', () => {
    const { template } = realTokenizer('gemma3')
    expect(template.render(MULTI)).toBe(
      '<bos><start_of_turn>user\nYou are terse.\n\nHi!<end_of_turn>\n' +
        '<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nBye?<end_of_turn>\n<start_of_turn>model\n',
    )
  })

  test('add_generation_prompt=false leaves the assistant header off', () => {
    const msgs = [{ role: 'user', content: 'Hi!' }]
    expect(realTokenizer('qwen3').template.render(msgs, { addGenerationPrompt: false })).toBe(
      '<|im_start|>user\nHi!<|im_end|>\n',
    )
    expect(realTokenizer('gemma3').template.render(msgs, { addGenerationPrompt: false })).toBe(
      '<bos><start_of_turn>user\nHi!<end_of_turn>\n',
    )
  })

  test('a template that alternates roles raises through raise_exception as ChatTemplateError', () => {
    const { template } = realTokenizer('gemma3')
    const bad = [
      { role: 'user', content: 'a' },
      { role: 'user', content: 'b' },
    ]
    expect(() => template.render(bad)).toThrow(ChatTemplateError)
    expect(() => template.render(bad)).toThrow(/alternate/)
  })
})

describe('BOS never doubled', () => {
  test.each(['llama3_2', 'gemma3'] as const)(
    '%s: the template writes BOS, the prompt has exactly one',
    (name) => {
      const { tokenizer, template } = realTokenizer(name)
      const rendered = template.render([{ role: 'user', content: 'Hi!' }], { date: DATE })
      const bos = tokenizer.bosTokenId as number
      // Encoding as a raw completion would (addBos) doubles it: the bug this guards against.
      expect(tokenizer.encode(rendered, { addBos: true }).slice(0, 2)).toEqual([bos, bos])
      const ids = encodeChatPrompt(tokenizer, rendered)
      expect(ids[0]).toBe(bos)
      expect(ids.filter((id) => id === bos)).toHaveLength(1)
    },
  )

  test('a template without BOS text still gets the tokenizer BOS once', () => {
    const { tokenizer } = realTokenizer('llama3_2')
    const ids = encodeChatPrompt(
      tokenizer,
      new ChatTemplate('{{ messages[0].content }}').render([{ role: 'user', content: 'hi' }]),
    )
    expect(ids).toEqual([128000, 6151])
  })

  test('add_bos_token: false in tokenizer_config.json adds none', () => {
    const { tokenizer } = realTokenizer('llama3_2')
    const template = ChatTemplate.fromTokenizerConfig({
      chat_template: '{{ messages[0].content }}',
      add_bos_token: false,
    })
    expect(template?.specials.addBosToken).toBe(false)
    expect(encodeChatPrompt(tokenizer, 'hi', { addBos: false })).toEqual([6151])
    expect(encodeChatPrompt(tokenizer, '<|begin_of_text|>hi', { addBos: false })).toEqual([128000, 6151])
  })

  test('a tokenizer without BOS (Qwen) adds none', () => {
    const { tokenizer, template } = realTokenizer('qwen3')
    expect(encodeChatPrompt(tokenizer, template.render([{ role: 'user', content: 'Hi!' }]))[0]).toBe(151644)
  })
})

describe('stop tokens', () => {
  test('each template ends turns with its own token, and that is a stop id', () => {
    const cases = [
      ['llama3_2', '<|eot_id|>', 128009],
      ['qwen3', '<|im_end|>', 151645],
      ['gemma3', '<end_of_turn>', 106],
    ] as const
    for (const [name, token, id] of cases) {
      const { tokenizer, template } = realTokenizer(name)
      expect(template.endOfTurnTokens()).toContain(token)
      expect(stopTokenIdsOf({ tokenizer, template })).toContain(id)
    }
  })

  test('config.json and generation_config.json ids are added, deduplicated, in range', () => {
    const { tokenizer, template } = realTokenizer('llama3_2')
    // Llama 3.2 Instruct's generation_config.json: eos_token_id [128001, 128008, 128009].
    const generationEosIds = generationConfigEosIds({ eos_token_id: [128001, 128008, 128009] })
    expect(
      stopTokenIdsOf({ tokenizer, template, configEosIds: [128001, 999_999], generationEosIds }),
    ).toEqual([128009, 128001, 128008])
  })

  test('generation_config.json eos_token_id is an int, a list, or absent; anything else is refused', () => {
    expect(generationConfigEosIds({ eos_token_id: 2 })).toEqual([2])
    expect(generationConfigEosIds({ bos_token_id: 1 })).toEqual([])
    for (const bad of [[], 'x', { eos_token_id: '2' }, { eos_token_id: [-1] }, { eos_token_id: [1.5] }]) {
      expect(() => generationConfigEosIds(bad)).toThrow(ChatTemplateError)
    }
  })
})

describe('ChatTemplate sources and limits', () => {
  test('the list-of-templates form takes "default"; chat_template.jinja wins over the config', () => {
    const config = {
      bos_token: '<s>',
      chat_template: [
        { name: 'tool_use', template: 'tools' },
        { name: 'default', template: '{{ bos_token }}default' },
      ],
    }
    expect(ChatTemplate.fromTokenizerConfig(config)?.render([])).toBe('<s>default')
    expect(ChatTemplate.fromTokenizerConfig(config, 'jinja {{ bos_token }}')?.render([])).toBe('jinja <s>')
    expect(ChatTemplate.fromTokenizerConfig({})).toBeUndefined()
    expect(
      ChatTemplate.fromTokenizerConfig({ chat_template: [{ name: 'rag', template: 'x' }] }),
    ).toBeUndefined()
    expect(() => ChatTemplate.fromTokenizerConfig({ chat_template: 3 })).toThrow(ChatTemplateError)
    expect(() => ChatTemplate.fromTokenizerConfig({ chat_template: [{ name: 'default' }] })).toThrow(
      ChatTemplateError,
    )
  })

  test('a syntax error is ERR_CHAT_TEMPLATE when rendering, not when loading', () => {
    const template = new ChatTemplate('{% for m in messages %}{{ m.content }}')
    let err: unknown
    try {
      template.render([{ role: 'user', content: 'x' }])
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ButterflyError)
    expect((err as ButterflyError).code).toBe('ERR_CHAT_TEMPLATE')
    expect((err as Error).message).toMatch(/does not parse/)
  })

  test('size caps: template source, message count and size, rendered length, range()', () => {
    expect(() => new ChatTemplate('x'.repeat(CHAT_TEMPLATE_LIMITS.sourceChars + 1))).toThrow(/at most/)
    const echo = new ChatTemplate('{% for m in messages %}{{ m.content }}{% endfor %}')
    const many = Array.from({ length: CHAT_TEMPLATE_LIMITS.messages + 1 }, () => ({
      role: 'user',
      content: '',
    }))
    expect(() => echo.render(many)).toThrow(ChatTemplateError)
    const big = { role: 'user', content: 'x'.repeat(CHAT_TEMPLATE_LIMITS.messageChars + 1) }
    expect(() => echo.render([big])).toThrow(ChatTemplateError)
    const half = { role: 'user', content: 'x'.repeat(CHAT_TEMPLATE_LIMITS.messageChars) }
    expect(() => echo.render([half, half, half, half, half])).toThrow(/rendered chat exceeds/)
    expect(() => new ChatTemplate('{% for i in range(100000000) %}x{% endfor %}').render([])).toThrow(/range/)
    expect(new ChatTemplate('{% for i in range(3) %}{{ i }}{% endfor %}').render([])).toBe('012')
  })

  test('a template cannot modify the caller messages', () => {
    const msgs = [{ role: 'user', content: 'a' }]
    new ChatTemplate('{% set m = messages[0] %}{{ m.content }}').render(msgs)
    expect(msgs).toEqual([{ role: 'user', content: 'a' }])
  })

  test('strftime covers what templates use, in UTC', () => {
    const d = new Date(Date.UTC(2024, 6, 5, 9, 3, 7))
    expect(strftime(d, '%d %b %Y')).toBe('05 Jul 2024')
    expect(strftime(d, '%A %B %m/%y %H:%M:%S %%')).toBe('Friday July 07/24 09:03:07 %')
  })
})
