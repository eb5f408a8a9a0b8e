import { Global, Module } from '@nestjs/common';
import { BackgroundTasks } from './background-tasks.js';

/** Where a feature registers its background loop (BackgroundTasks.every). */
@Global()
@Module({ providers: [BackgroundTasks], exports: [BackgroundTasks] })
export class BackgroundModule {}
