import { readFileSync } from 'node:fs';
import path from 'node:path';

const README = path.resolve(import.meta.dirname, '../../README.md');

/** The code block (of `lang`) between the `<name>:start` and `<name>:end` markers of README.md. */
export function readmeBlock(name: string, lang = 'bash'): string {
  const readme = readFileSync(README, 'utf8');
  const block = new RegExp(
    `<!-- ${name}:start -->\\s*\`\`\`${lang}\\n([\\s\\S]*?)\`\`\`\\s*<!-- ${name}:end -->`,
  ).exec(readme);
  if (!block) throw new Error(`README.md has no ${name} between its markers`);
  return block[1];
}
