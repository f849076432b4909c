import DOMPurify from 'dompurify'
import { Marked } from 'marked'

// One parser for every message: GitHub-flavoured Markdown (tables, fenced code, lists), line
// breaks kept as the model wrote them. Raw HTML in a message is not trusted: marked passes it
// through, and DOMPurify then removes scripts, event handlers and anything else that could run.
// Images go too: a reply must not make the browser fetch from wherever its text points.
const parser = new Marked({ gfm: true, breaks: true, async: false })

const purifier = DOMPurify(window)
// Links open outside the app and cannot reach back into it.
purifier.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A') {
    node.setAttribute('target', '_blank')
    node.setAttribute('rel', 'noopener noreferrer')
  }
})

/** Markdown as HTML that is safe to insert: sanitised, with no script, handler or form left. */
export function renderMarkdown(source: string): string {
  const html = parser.parse(source) as string
  return purifier.sanitize(html, {
    USE_PROFILES: { html: true },
    FORBID_TAGS: ['img', 'style', 'form', 'input', 'button', 'textarea', 'select', 'iframe'],
    FORBID_ATTR: ['style'],
  })
}
