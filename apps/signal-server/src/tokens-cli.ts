import { CliUsageError } from '@butterfly/node-platform'
import { Command, Option } from 'commander'
import { intArg, meshArg, pathArg } from './cli-args.js'
import { JOIN_TOKEN_LIMITS, JoinTokenStore } from './control/join-tokens.js'
import { JoinTokenFileError } from './errors.js'

function fileOption(): Option {
  return new Option('--join-token-file <path>', 'the JSON file the server reads (--join-token-file)')
    .env('BUTTERFLY_JOIN_TOKEN_FILE')
    .argParser(pathArg('--join-token-file'))
    .makeOptionMandatory()
}

function labelArg(value: string): string {
  if (value.length > JOIN_TOKEN_LIMITS.label || !/^[\x20-\x7e]*$/.test(value)) {
    throw new CliUsageError(
      `--label must be printable ASCII of at most ${JOIN_TOKEN_LIMITS.label} characters`,
    )
  }
  return value
}

/**
 * `butterfly-server tokens issue|list|revoke`: per-peer join tokens in the server's token file,
 * offline. A running server does not see these changes (and rewrites the file on its own next
 * change): with the server running, use its /admin API instead.
 */
export function tokensCommand(out: NodeJS.WritableStream): Command {
  const print = (v: unknown) => out.write(`${JSON.stringify(v, null, 2)}\n`)
  // Set before the subcommands, which copy them: usage errors throw instead of exiting.
  const tokens = new Command('tokens')
    .description(
      'issue, list or revoke per-peer join tokens in a token file (offline: with the server running, use /admin)',
    )
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, writeOut: (s) => out.write(s) })
  tokens
    .command('issue')
    .description('issue a token for one mesh and print it (shown this once; the file keeps only its SHA-256)')
    .addOption(fileOption())
    .addOption(new Option('--mesh <name>', 'the mesh it admits to').argParser(meshArg).makeOptionMandatory())
    .addOption(new Option('--label <text>', 'a note for the operator (who it is for)').argParser(labelArg))
    .addOption(
      new Option('--expires-in <seconds>', 'lifetime; default: no expiry').argParser(
        intArg('--expires-in', 1, JOIN_TOKEN_LIMITS.maxExpiresInSeconds),
      ),
    )
    .action((opts: { joinTokenFile: string; mesh: string; label?: string; expiresIn?: number }) => {
      const store = JoinTokenStore.open(opts.joinTokenFile)
      print(store.issue({ mesh: opts.mesh, label: opts.label, expiresInSeconds: opts.expiresIn }))
    })
  tokens
    .command('list')
    .description('list the tokens (without secrets)')
    .addOption(fileOption())
    .action((opts: { joinTokenFile: string }) => {
      print({ tokens: JoinTokenStore.open(opts.joinTokenFile).list() })
    })
  tokens
    .command('revoke')
    .description('revoke a token by id: it admits nobody any more')
    .addOption(fileOption())
    .argument('<id>', 'the token id (jt_...)')
    .action((id: string, opts: { joinTokenFile: string }) => {
      const store = JoinTokenStore.open(opts.joinTokenFile)
      if (store.revoke(id) === undefined)
        throw new JoinTokenFileError(`${opts.joinTokenFile}: no token ${id}`)
      print({ revoked: store.get(id) })
    })
  return tokens
}
