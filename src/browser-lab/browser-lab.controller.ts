import { Controller, Get, Header, Inject, NotFoundException, Param, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { Public } from '../merchants/public.decorator.js';

/** The page's own files (page/, copied next to the compiled controller by npm run build). */
const FILES = {
  'lab.js': 'text/javascript; charset=utf-8',
  'lab.css': 'text/css; charset=utf-8',
};
const PAGE_DIR = path.join(import.meta.dirname, 'page');

/**
 * The retry lab in the browser, at /lab: a page that charges an account through
 * the public API and lets a learner lose a response, retry it with the same key or
 * a new one, fire duplicates and send a stale If-Match, and watch what the server
 * does. Registered only outside production (see AppModule): it offers the demo key.
 */
@Controller('lab')
@Public()
export class BrowserLabController {
  private readonly page: string;
  /** Each file's type and body, read once at start-up (outside production; a few kB). */
  private readonly files = new Map(
    Object.entries(FILES).map(([file, type]) => [file, { type, body: read(file) }]),
  );

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    // The demo merchant's key (it exists outside production) fills the key field.
    this.page = read('index.html').replace('%DEMO_API_KEY%', escapeAttribute(config.DEMO_API_KEY));
  }

  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  index(): string {
    return this.page;
  }

  @Get(':file')
  file(@Param('file') file: string, @Res({ passthrough: true }) reply: FastifyReply): string {
    const found = this.files.get(file);
    if (found === undefined) throw new NotFoundException();
    reply.header('Content-Type', found.type).header('Cache-Control', 'no-store');
    return found.body;
  }
}

function read(file: string): string {
  return readFileSync(path.join(PAGE_DIR, file), 'utf8');
}

function escapeAttribute(value: string): string {
  return value.replace(/[&"<>]/g, (c) => `&#${c.charCodeAt(0)};`);
}
