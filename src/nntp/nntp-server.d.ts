/* The part of nntp-server 3.1.0 (CommonJS, untyped) that the adapter reuses: its command table. */
declare module 'nntp-server' {
  import type { Readable } from 'node:stream';

  export type LibReply = string | number | null | Readable | LibReply[];

  export interface LibCommand {
    readonly head: string;
    readonly validate: RegExp;
    run(session: unknown, line: string): LibReply | Promise<LibReply>;
    capability?(session: unknown, report: unknown[]): void;
  }

  interface NntpModule {
    readonly commands: Readonly<Record<string, LibCommand>>;
  }

  const mod: NntpModule;
  export default mod;
}

declare module 'nntp-server/lib/wildmat.js' {
  function wildmat(pattern: string): RegExp;
  export default wildmat;
}
