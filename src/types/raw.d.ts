// `import text from './file?raw'`: the file's content as a string (esbuild plugin scripts/esbuild-raw.mjs; Vite natively).
declare module '*?raw' {
  const content: string;
  export default content;
}
