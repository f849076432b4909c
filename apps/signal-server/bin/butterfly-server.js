#!/usr/bin/env node
// Thin launcher: the TypeScript is compiled to dist/ by `npm install` (root postinstall).
import { main } from '../dist/cli.js'

process.exitCode = await main(process.argv.slice(2), { exitAfterStopMs: 5000 })
