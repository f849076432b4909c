import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

// `vite dev` proxies the API to a server on 127.0.0.1:8080 (npm start); the built app is served
// by the signal server itself. Both send COOP/COEP so ORT-web's WASM may use threads.
const server = process.env.BUTTERFLY_SERVER ?? 'http://127.0.0.1:8080'
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
}

export default defineConfig({
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true },
  server: {
    host: '127.0.0.1',
    headers: isolation,
    proxy: { '/v1': server, '/health': server, '/metrics': server, '/models': server },
  },
})
