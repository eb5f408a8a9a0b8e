import { readFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');

/**
 * The code block (of `lang`) between the `<name>:start` and `<name>:end` markers of
 * a page of the docs (README.md by default): the tests run what the docs tell a
 * reader to paste.
 */
export function readmeBlock(name: string, lang = 'bash', file = 'README.md'): string {
  const page = readFileSync(path.join(ROOT, file), 'utf8');
  const block = new RegExp(
    `<!-- ${name}:start -->\\s*\`\`\`${lang}\\n([\\s\\S]*?)\`\`\`\\s*<!-- ${name}:end -->`,
  ).exec(page);
  if (!block) throw new Error(`${file} has no ${name} between its markers`);
  return block[1];
}
