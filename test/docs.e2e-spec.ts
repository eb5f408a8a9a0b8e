import { describe, expect, it } from '@jest/globals';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { AppConfig, CONFIG_KEYS } from '../src/config/config.js';

/**
 * The docs are part of what this project teaches, so they are checked like code:
 * what they cite exists, what they list is complete, and their links lead somewhere.
 */
const root = path.resolve(import.meta.dirname, '..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');

/** Every file below `dir` (relative to the root) whose name ends with one of `endings`. */
function filesUnder(dir: string, endings: string[]): string[] {
  return readdirSync(path.join(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((file) => endings.some((ending) => file.endsWith(ending)))
    .map((file) => path.join(dir, file));
}

describe('docs/api-contract.md', () => {
  /** "4" for "## 4. Idempotency semantics", and "4.8" for item 8 of that section. */
  function contractSections(): Set<string> {
    const sections = new Set<string>();
    let section = '';
    for (const line of read('docs/api-contract.md').split('\n')) {
      const heading = /^## (\d+)\./.exec(line);
      if (heading) sections.add((section = heading[1]));
      const item = /^(\d+)\. /.exec(line);
      if (item && section) sections.add(`${section}.${item[1]}`);
    }
    return sections;
  }

  it('has every section and item that the code and docs cite ("contract §4.8")', () => {
    const sections = contractSections();
    const files = [
      ...filesUnder('src', ['.ts']),
      ...filesUnder('test', ['.ts']),
      ...filesUnder('docs', ['.md']),
      'README.md',
    ];
    const cited = files.flatMap((file) =>
      [...read(file).matchAll(/(?:contract |\()§(\d+(?:\.\d+)?)/gi)].map((m) => ({
        file,
        section: m[1],
      })),
    );

    expect(cited.length).toBeGreaterThan(10);
    expect(cited.filter(({ section }) => !sections.has(section))).toEqual([]);
  });
});

describe('docs/configuration.md', () => {
  /** The rows of the table under "## The settings": variable → default cell. */
  function configurationTable(): Map<string, string> {
    const page = read('docs/configuration.md');
    const section = page.slice(page.indexOf('## The settings'));
    const rows = new Map<string, string>();
    for (const m of section.matchAll(/^\| `([A-Z_]+)` +\| ([^|]+?) +\|/gm)) rows.set(m[1], m[2]);
    return rows;
  }

  it('lists every setting the app reads in its configuration table, and only those', () => {
    expect([...configurationTable().keys()].sort()).toEqual([...CONFIG_KEYS].sort());
  });

  it('gives each setting the default the app has', () => {
    const table = configurationTable();
    const defaults = new AppConfig() as unknown as Record<string, string | number | boolean>;
    for (const key of CONFIG_KEYS) {
      const value = defaults[key];
      // HOST depends on the machine, DATABASE_URL has none: the table says so in words.
      if (key === 'HOST' || value === undefined) continue;
      expect({ key, cell: table.get(key) }).toEqual({ key, cell: `\`${value}\`` });
    }
  });
});

describe('docs/README.md', () => {
  it('leads to every page of docs/ and every decision record', () => {
    const index = read('docs/README.md');
    const linked = new Set(
      [...index.matchAll(/\]\(([^)#\s]+)/g)].map((m) => path.normalize(path.join('docs', m[1]))),
    );
    const pages = filesUnder('docs', ['.md', '.sql']).filter((f) => f !== 'docs/README.md');

    expect(pages.length).toBeGreaterThan(30);
    expect(pages.filter((page) => !linked.has(page))).toEqual([]);
  });
});

describe('links', () => {
  /** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes. */
  const anchor = (heading: string) =>
    heading
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N} _-]/gu, '')
      .replace(/ /g, '-');

  function anchorsOf(file: string): Set<string> {
    return new Set(
      [...read(file).matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchor(m[1].replace(/`/g, ''))),
    );
  }

  it('in README.md and docs/ lead to files that exist, and to headings that exist', () => {
    const broken: string[] = [];
    for (const file of ['README.md', ...filesUnder('docs', ['.md'])]) {
      const text = read(file).replace(/```[\s\S]*?```/g, ''); // not inside code blocks
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target)) continue; // http:, https:, mailto:
        const [relative, hash] = target.split('#');
        const linked = relative ? path.join(path.dirname(file), relative) : file;
        if (!existsSync(path.join(root, linked))) broken.push(`${file}: ${target}`);
        else if (hash && linked.endsWith('.md') && !anchorsOf(linked).has(hash)) {
          broken.push(`${file}: ${target} (no such heading)`);
        }
      }
    }
    expect(broken).toEqual([]);
  });
});
