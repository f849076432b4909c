import { useMemo } from 'react'
import { renderMarkdown } from '../render/markdown.js'

/** A message rendered as Markdown: code blocks, lists, tables; sanitised before it reaches the DOM. */
export function MarkdownText({ source, testId }: { source: string; testId?: string }) {
  const html = useMemo(() => renderMarkdown(source), [source])
  return (
    <div
      className="markdown"
      data-testid={testId}
      // biome-ignore lint/security/noDangerouslySetInnerHtml: renderMarkdown's output went through DOMPurify
      dangerouslySetInnerHTML={{ __html: html }}
    />
  )
}
